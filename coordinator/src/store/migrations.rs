//! The state file's schema, as the list of migrations that build it. `PRAGMA user_version` says how
//! many have been applied; [`super::Store::open`] applies the rest, each in its own transaction.

/// Each entry upgrades the schema by one version; applied in order, each in its own transaction.
/// Never edit a shipped entry: append a new one.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: the initial schema.
    r#"
    CREATE TABLE sweeps (
        id               TEXT PRIMARY KEY,
        name             TEXT NOT NULL,
        spec_toml        TEXT NOT NULL,
        dataset_spec     TEXT NOT NULL,
        dataset_sha256   TEXT NOT NULL,
        dataset_bytes    INTEGER NOT NULL,
        synthetic        INTEGER NOT NULL,
        validation       TEXT NOT NULL,
        max_attempts     INTEGER NOT NULL,
        lease_ttl_ms     INTEGER NOT NULL,
        created_ms       INTEGER NOT NULL,
        cancel_requested INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE jobs (
        id               TEXT PRIMARY KEY,
        model            TEXT NOT NULL,
        optimizer        TEXT NOT NULL,
        batch_size       INTEGER NOT NULL,
        max_epochs       INTEGER NOT NULL,
        learning_rate    REAL NOT NULL,
        seed             INTEGER NOT NULL,
        dataset_sha256   TEXT NOT NULL,
        state            TEXT NOT NULL CHECK (state IN ('queued', 'leased', 'done', 'failed', 'cancelled')),
        queued_seq       INTEGER NOT NULL,
        attempts         INTEGER NOT NULL DEFAULT 0,
        max_attempts     INTEGER NOT NULL,
        lease_ttl_ms     INTEGER NOT NULL,
        lease_id         TEXT,
        worker_id        TEXT,
        lease_expires_ms INTEGER,
        epochs_done      INTEGER NOT NULL DEFAULT 0,
        latest_json      TEXT,
        result_json      TEXT,
        error            TEXT,
        updated_ms       INTEGER NOT NULL
    );
    CREATE INDEX jobs_queue ON jobs (state, queued_seq);
    CREATE INDEX jobs_expiry ON jobs (state, lease_expires_ms);
    CREATE TABLE sweep_jobs (
        sweep_id TEXT NOT NULL REFERENCES sweeps (id),
        job_id   TEXT NOT NULL REFERENCES jobs (id),
        position INTEGER NOT NULL,
        reused   INTEGER NOT NULL,
        PRIMARY KEY (sweep_id, job_id)
    );
    CREATE INDEX sweep_jobs_by_job ON sweep_jobs (job_id);
    CREATE TABLE attempts (
        lease_id   TEXT PRIMARY KEY,
        job_id     TEXT NOT NULL REFERENCES jobs (id),
        attempt    INTEGER NOT NULL,
        worker_id  TEXT NOT NULL,
        started_ms INTEGER NOT NULL,
        ended_ms   INTEGER,
        outcome    TEXT,
        error      TEXT
    );
    CREATE TABLE epochs (
        lease_id     TEXT NOT NULL REFERENCES attempts (lease_id),
        epoch        INTEGER NOT NULL,
        metrics_json TEXT NOT NULL,
        PRIMARY KEY (lease_id, epoch)
    );
    CREATE TABLE workers (
        id            TEXT PRIMARY KEY,
        host          TEXT NOT NULL,
        device        TEXT NOT NULL,
        slots         INTEGER NOT NULL,
        registered_ms INTEGER NOT NULL,
        last_seen_ms  INTEGER NOT NULL
    );
    "#,
    // 2: the queue's tail (the next sequence number) without a table scan.
    r#"
    CREATE INDEX jobs_by_seq ON jobs (queued_seq);
    "#,
    // 3: the queue and the lease expiries as partial indexes: a job is in at most one of them, so a
    // state change touches one or two index entries instead of four.
    r#"
    DROP INDEX jobs_queue;
    DROP INDEX jobs_expiry;
    CREATE INDEX jobs_queued ON jobs (queued_seq) WHERE state = 'queued';
    CREATE INDEX jobs_leased ON jobs (lease_expires_ms) WHERE state = 'leased';
    "#,
    // 4: the state check as a chain of comparisons. `state IN (...)` built a temporary B-tree of
    // the five names on every change of state: a quarter of the store's work per job (callgrind:
    // 181k -> 139k instructions per job). SQLite cannot alter a CHECK, so the table is rebuilt.
    r#"
    CREATE TABLE jobs_v4 (
        id               TEXT PRIMARY KEY,
        model            TEXT NOT NULL,
        optimizer        TEXT NOT NULL,
        batch_size       INTEGER NOT NULL,
        max_epochs       INTEGER NOT NULL,
        learning_rate    REAL NOT NULL,
        seed             INTEGER NOT NULL,
        dataset_sha256   TEXT NOT NULL,
        state            TEXT NOT NULL CHECK (state = 'queued' OR state = 'leased' OR state = 'done' OR state = 'failed' OR state = 'cancelled'),
        queued_seq       INTEGER NOT NULL,
        attempts         INTEGER NOT NULL DEFAULT 0,
        max_attempts     INTEGER NOT NULL,
        lease_ttl_ms     INTEGER NOT NULL,
        lease_id         TEXT,
        worker_id        TEXT,
        lease_expires_ms INTEGER,
        epochs_done      INTEGER NOT NULL DEFAULT 0,
        latest_json      TEXT,
        result_json      TEXT,
        error            TEXT,
        updated_ms       INTEGER NOT NULL
    );
    INSERT INTO jobs_v4 SELECT * FROM jobs ORDER BY rowid;
    DROP TABLE jobs;
    ALTER TABLE jobs_v4 RENAME TO jobs;
    CREATE INDEX jobs_by_seq ON jobs (queued_seq);
    CREATE INDEX jobs_queued ON jobs (queued_seq) WHERE state = 'queued';
    CREATE INDEX jobs_leased ON jobs (lease_expires_ms) WHERE state = 'leased';
    "#,
    // 5: a worker's death (a lease that expired) is counted apart from the job's own failures, with
    // a limit of its own, so machines dying do not fail healthy jobs. `max_attempts` now bounds the
    // failures (attempts - lost); for the rows written before, lost is 0 and the bound is unchanged.
    // The default of max_lost is jobs::MAX_LOST at the time of writing.
    r#"
    ALTER TABLE jobs ADD COLUMN lost INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE jobs ADD COLUMN max_lost INTEGER NOT NULL DEFAULT 20;
    "#,
    // 6: the request each lease was granted for, so a worker that retries a request after a lost
    // reply gets the same leases instead of a second set; and the sweep a job was last submitted
    // with, read with the job (a lease names its sweep without another lookup).
    r#"
    ALTER TABLE attempts ADD COLUMN request_id TEXT;
    CREATE INDEX attempts_by_request ON attempts (worker_id, request_id) WHERE request_id IS NOT NULL;
    ALTER TABLE jobs ADD COLUMN last_sweep TEXT;
    UPDATE jobs SET last_sweep = (
        SELECT s.sweep_id FROM sweep_jobs s WHERE s.job_id = jobs.id ORDER BY s.rowid DESC LIMIT 1
    );
    "#,
    // 7: the newest saved state of each running trial, so a requeued job resumes from its last
    // reported epoch instead of from the start. Kept apart from `jobs`: a few KB per row, and only
    // jobs that were interrupted are ever read.
    r#"
    CREATE TABLE checkpoints (
        job_id   TEXT PRIMARY KEY REFERENCES jobs (id),
        lease_id TEXT NOT NULL,
        epoch    INTEGER NOT NULL,
        state    BLOB NOT NULL
    );
    "#,
    // 8: worker names are numbered from a counter, not from the number of rows, so a name is never
    // given twice once gone workers are pruned.
    r#"
    CREATE TABLE counters (
        name  TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    );
    INSERT INTO counters (name, value) SELECT 'workers', COUNT(*) FROM workers;
    "#,
    // 9: a sweep's jobs in grid order without sorting them: a page of ListJobs reads only itself.
    r#"
    CREATE INDEX sweep_jobs_by_position ON sweep_jobs (sweep_id, position);
    "#,
    // 10: a job's attempts without a scan, for its learning curve across attempts.
    r#"
    CREATE INDEX attempts_by_job ON attempts (job_id);
    "#,
    // 11: each finished job's summary of its epochs (validation at the best epoch, training time,
    // final losses: jetsweep_proto::metrics::EpochSummary), written at completion so results never
    // read the epochs again. Filled in here for jobs finished before, from their stored epochs
    // (each epoch as its latest attempt reported it), where every epoch up to the last is there.
    r#"
    ALTER TABLE jobs ADD COLUMN summary_json TEXT;
    WITH latest AS (
        SELECT a.job_id AS job_id, e.epoch AS epoch, e.metrics_json AS m,
               ROW_NUMBER() OVER (PARTITION BY a.job_id, e.epoch ORDER BY a.attempt DESC) AS newest
        FROM jobs j JOIN attempts a ON a.job_id = j.id JOIN epochs e ON e.lease_id = a.lease_id
        WHERE j.state = 'done'
    ),
    per_job AS (
        SELECT job_id, COUNT(*) AS epochs, MAX(epoch) AS last_epoch,
               SUM(json_extract(m, '$.seconds')) AS seconds,
               SUM(json_extract(m, '$.seconds') * json_extract(m, '$.samples_per_second')) AS samples
        FROM latest WHERE newest = 1 GROUP BY job_id
    )
    UPDATE jobs SET summary_json = (
        SELECT json_object(
            'best_val_loss', json_extract(b.m, '$.val_loss'),
            'best_val_acc', json_extract(b.m, '$.val_acc'),
            'train_seconds', p.seconds,
            'samples_per_second', CASE WHEN p.seconds > 0 THEN p.samples / p.seconds ELSE 0.0 END,
            'final_train_loss', json_extract(l.m, '$.train_loss'),
            'final_test_loss', json_extract(l.m, '$.test_loss'))
        FROM per_job p
        JOIN latest b ON b.job_id = p.job_id AND b.newest = 1
             AND b.epoch = json_extract(jobs.result_json, '$.best_epoch')
        JOIN latest l ON l.job_id = p.job_id AND l.newest = 1 AND l.epoch = p.last_epoch
        WHERE p.job_id = jobs.id AND p.epochs = p.last_epoch
    )
    WHERE state = 'done';
    "#,
    // 12: a sweep's own record of the jobs it cancelled (when, and the lease then running, which
    // may still finish), so a cancelled sweep stays cancelled whatever a later sweep does with the
    // same jobs (it reads them through `jobs::rows::state_in_sweep`). Filled in for sweeps cancelled
    // before: each of their jobs not done counts as cancelled by them, its running lease kept; when
    // they cancelled is not known, so their creation time stands in.
    r#"
    ALTER TABLE sweep_jobs ADD COLUMN cancelled_ms INTEGER;
    ALTER TABLE sweep_jobs ADD COLUMN cancelled_lease TEXT;
    UPDATE sweep_jobs SET
        cancelled_ms = (SELECT w.created_ms FROM sweeps w WHERE w.id = sweep_jobs.sweep_id),
        cancelled_lease = (SELECT j.lease_id FROM jobs j WHERE j.id = sweep_jobs.job_id AND j.state = 'leased')
    WHERE sweep_id IN (SELECT id FROM sweeps WHERE cancel_requested = 1)
      AND job_id IN (SELECT id FROM jobs WHERE state != 'done');
    "#,
    // 13: packs as packs. Each job stores what it must share with others to train packed
    // (`Hyperparameters::pack_key`, the one packing rule; filled in here in its format), and each
    // attempt the first lease of the pack it was granted in, so a retried request gets its packs
    // back as they were granted.
    r#"
    ALTER TABLE jobs ADD COLUMN pack_key TEXT NOT NULL DEFAULT '';
    UPDATE jobs SET pack_key = model || '|' || optimizer || '|' || batch_size || '|' || max_epochs;
    ALTER TABLE attempts ADD COLUMN pack_lease TEXT;
    "#,
    // 14: a trial's weight decay (PyTorch Adam's); every job stored before it trained without.
    r#"
    ALTER TABLE jobs ADD COLUMN weight_decay REAL NOT NULL DEFAULT 0;
    "#,
    // 15: early stopping. A sweep that halves keeps its settings; each of its jobs knows its point
    // (the configuration its seed replicates) and the rung its point was stopped at; every
    // decision is a row, keyed so that it is made once.
    r#"
    ALTER TABLE sweeps ADD COLUMN stop_json TEXT;
    CREATE INDEX sweeps_stopping ON sweeps (cancel_requested) WHERE stop_json IS NOT NULL;
    ALTER TABLE sweep_jobs ADD COLUMN point INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE sweep_jobs ADD COLUMN stopped_epoch INTEGER;
    CREATE TABLE decisions (
        sweep_id     TEXT NOT NULL REFERENCES sweeps (id),
        rung         INTEGER NOT NULL,
        cohort       TEXT NOT NULL,
        decided_ms   INTEGER NOT NULL,
        metric       TEXT NOT NULL,
        eta          INTEGER NOT NULL,
        scores_json  TEXT NOT NULL,
        cutoff       REAL,
        kept_json    TEXT NOT NULL,
        stopped_json TEXT NOT NULL,
        PRIMARY KEY (sweep_id, rung, cohort)
    );
    "#,
    // 16: asynchronous stopping (ASHA's promotions, the median rule). A job may be paused at a
    // rung, its state saved, until its point is promoted (SQLite cannot alter a CHECK, so the
    // table is rebuilt, its columns in their order); each point's arrival at a rung is a row with
    // its score and what was decided for it. Points are looked up by (sweep, point).
    r#"
    CREATE TABLE jobs_v16 (
        id               TEXT PRIMARY KEY,
        model            TEXT NOT NULL,
        optimizer        TEXT NOT NULL,
        batch_size       INTEGER NOT NULL,
        max_epochs       INTEGER NOT NULL,
        learning_rate    REAL NOT NULL,
        seed             INTEGER NOT NULL,
        dataset_sha256   TEXT NOT NULL,
        state            TEXT NOT NULL CHECK (state IN ('queued', 'leased', 'done', 'failed', 'cancelled', 'paused')),
        queued_seq       INTEGER NOT NULL,
        attempts         INTEGER NOT NULL DEFAULT 0,
        max_attempts     INTEGER NOT NULL,
        lease_ttl_ms     INTEGER NOT NULL,
        lease_id         TEXT,
        worker_id        TEXT,
        lease_expires_ms INTEGER,
        epochs_done      INTEGER NOT NULL DEFAULT 0,
        latest_json      TEXT,
        result_json      TEXT,
        error            TEXT,
        updated_ms       INTEGER NOT NULL,
        lost             INTEGER NOT NULL DEFAULT 0,
        max_lost         INTEGER NOT NULL DEFAULT 20,
        last_sweep       TEXT,
        summary_json     TEXT,
        pack_key         TEXT NOT NULL DEFAULT '',
        weight_decay     REAL NOT NULL DEFAULT 0
    );
    INSERT INTO jobs_v16 SELECT * FROM jobs ORDER BY rowid;
    DROP TABLE jobs;
    ALTER TABLE jobs_v16 RENAME TO jobs;
    CREATE INDEX jobs_by_seq ON jobs (queued_seq);
    CREATE INDEX jobs_queued ON jobs (queued_seq) WHERE state = 'queued';
    CREATE INDEX jobs_leased ON jobs (lease_expires_ms) WHERE state = 'leased';
    CREATE INDEX sweep_jobs_by_point ON sweep_jobs (sweep_id, point);
    CREATE TABLE arrivals (
        sweep_id   TEXT NOT NULL REFERENCES sweeps (id),
        rung       INTEGER NOT NULL,
        point      INTEGER NOT NULL,
        cohort     TEXT NOT NULL,
        arrived_ms INTEGER NOT NULL,
        mean       REAL,
        std        REAL,
        seeds      INTEGER NOT NULL,
        action     TEXT NOT NULL CHECK (action IN ('paused', 'promoted', 'stopped', 'continued')),
        decided_ms INTEGER NOT NULL,
        cutoff     REAL,
        among      INTEGER NOT NULL,
        PRIMARY KEY (sweep_id, rung, point)
    ) WITHOUT ROWID;
    CREATE INDEX arrivals_by_cohort ON arrivals (sweep_id, cohort, rung);
    "#,
    // 17: the points TPE suggested while a sweep ran (a random or Sobol point is a function of
    // the search seed and its index, and is drawn again from the sweep file; these are not).
    r#"
    CREATE TABLE suggested_points (
        sweep_id     TEXT NOT NULL REFERENCES sweeps (id),
        point        INTEGER NOT NULL,
        values_json  TEXT NOT NULL,
        suggested_ms INTEGER NOT NULL,
        told         INTEGER NOT NULL,
        rung         INTEGER,
        PRIMARY KEY (sweep_id, point)
    ) WITHOUT ROWID;
    "#,
    // 18: who did what. A sweep keeps the credential that submitted it (sweeps from before
    // credentials existed, and an open coordinator's, say "anonymous"); every submission and
    // cancel is a row of the audit log, in the transaction that did it.
    r#"
    ALTER TABLE sweeps ADD COLUMN submitted_by TEXT NOT NULL DEFAULT 'anonymous';
    CREATE TABLE audit (
        seq      INTEGER PRIMARY KEY,
        at_ms    INTEGER NOT NULL,
        who      TEXT NOT NULL,
        role     TEXT NOT NULL,
        action   TEXT NOT NULL,
        sweep_id TEXT NOT NULL,
        detail   TEXT NOT NULL
    );
    CREATE INDEX audit_by_sweep ON audit (sweep_id, seq);
    "#,
    // 19: fair share between sweeps. Each sweep's weight, cap, device class and when it was last
    // served (a tick: among equals, the one served longest ago goes first); a queued job is
    // its last submitting sweep's (`last_sweep`, migration 7), and the queue is indexed by sweep
    // so leasing finds each active sweep's oldest job without reading the others'.
    r#"
    ALTER TABLE sweeps ADD COLUMN priority REAL NOT NULL DEFAULT 1;
    ALTER TABLE sweeps ADD COLUMN max_running INTEGER;
    ALTER TABLE sweeps ADD COLUMN device TEXT NOT NULL DEFAULT 'any';
    ALTER TABLE sweeps ADD COLUMN last_served INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX jobs_queued_by_sweep ON jobs (last_sweep, queued_seq) WHERE state = 'queued';
    "#,
    // 20: the fair share's numbers in a table of their own, a small row per sweep: reading or
    // writing them in `sweeps` touched the row's overflow pages (the sweep file's text comes
    // before them), ~100k instructions a lease. Each sweep's running jobs are a count kept by a
    // trigger on every change of a job's state or sweep, whichever code path makes it, instead of
    // counting the leased jobs on each lease (which grows with the cluster).
    r#"
    CREATE TABLE sweep_shares (
        sweep_id    TEXT PRIMARY KEY REFERENCES sweeps (id),
        priority    REAL NOT NULL DEFAULT 1,
        max_running INTEGER,
        device      TEXT NOT NULL DEFAULT 'any',
        last_served INTEGER NOT NULL DEFAULT 0,
        running     INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID;
    INSERT INTO sweep_shares (sweep_id, priority, max_running, device, last_served, running)
        SELECT id, priority, max_running, device, last_served,
               (SELECT COUNT(*) FROM jobs WHERE state = 'leased' AND last_sweep = sweeps.id)
        FROM sweeps;
    ALTER TABLE sweeps DROP COLUMN priority;
    ALTER TABLE sweeps DROP COLUMN max_running;
    ALTER TABLE sweeps DROP COLUMN device;
    ALTER TABLE sweeps DROP COLUMN last_served;
    CREATE TRIGGER jobs_running_count AFTER UPDATE OF state, last_sweep ON jobs
    WHEN (old.state = 'leased' OR new.state = 'leased')
     AND (old.state IS NOT new.state OR old.last_sweep IS NOT new.last_sweep)
    BEGIN
        UPDATE sweep_shares SET running = running - 1
         WHERE old.state = 'leased' AND sweep_id = old.last_sweep;
        UPDATE sweep_shares SET running = running + 1
         WHERE new.state = 'leased' AND sweep_id = new.last_sweep;
    END;
    "#,
    // 21: the queue's first index, by `queued_seq` alone, is unused since leasing picks a sweep
    // first and takes its oldest job through `jobs_queued_by_sweep` (migration 19), which also
    // answers the queue's counts; keeping both cost ~10k instructions a job (callgrind
    // `store_cost 5000 50`: 2,162,918,899 -> 2,112,688,295).
    r#"
    DROP INDEX jobs_queued;
    "#,
    // 22: kept models. Each job keeps the weights of its best epoch (lowest validation loss) and,
    // if a sweep asks, of its last (`keep_models`, the most any of its sweeps asks: 0 none, 1 best,
    // 2 best and last), as the worker sent them with its result (`jetsweep_proto::weights`).
    r#"
    ALTER TABLE jobs ADD COLUMN keep_models INTEGER NOT NULL DEFAULT 1;
    CREATE TABLE models (
        job_id  TEXT NOT NULL REFERENCES jobs (id),
        kind    TEXT NOT NULL CHECK (kind IN ('best', 'last')),
        epoch   INTEGER NOT NULL,
        weights BLOB NOT NULL,
        PRIMARY KEY (job_id, kind)
    );
    "#,
    // 23: a worker that said goodbye (its last heartbeat had `leaving`) is shown as left, not gone.
    r#"
    ALTER TABLE workers ADD COLUMN left_ms INTEGER;
    "#,
    // 24: running counts for less. Leasing adds a pack's jobs to its sweep's count itself, in one
    // statement per pack (every job of a pack is of one sweep), where the trigger of migration 20
    // ran two statements per job; the triggers that stay fire only for a job that was leased: one
    // statement when it stops running (done, failed, expired, handed back, paused, cancelled), and
    // the move of a running job's count when another sweep adopts it. Callgrind `store_cost 5000
    // 50`: see coordinator/docs/sharing.md.
    r#"
    DROP TRIGGER jobs_running_count;
    CREATE TRIGGER jobs_running_ended AFTER UPDATE OF state ON jobs
    WHEN old.state = 'leased' AND new.state IS NOT 'leased'
    BEGIN
        UPDATE sweep_shares SET running = running - 1 WHERE sweep_id = old.last_sweep;
    END;
    CREATE TRIGGER jobs_running_moved AFTER UPDATE OF last_sweep ON jobs
    WHEN old.state = 'leased' AND new.state = 'leased' AND old.last_sweep IS NOT new.last_sweep
    BEGIN
        UPDATE sweep_shares SET running = running - 1 WHERE sweep_id = old.last_sweep;
        UPDATE sweep_shares SET running = running + 1 WHERE sweep_id = new.last_sweep;
    END;
    "#,
    // 25: the fair share reads its next sweep from an index instead of weighing every active
    // sweep (two statements each) on every lease. `active`: a job of the sweep may be queued (set
    // by submit and by the trigger below whenever a job is queued again or adopted while queued;
    // cleared by the lease that finds none); `seq`: submission order, the last tie-break; turns
    // come from one counter. `store_cost 5000 50 SWEEPS`: see coordinator/docs/sharing.md.
    r#"
    ALTER TABLE sweep_shares ADD COLUMN active INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE sweep_shares ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
    UPDATE sweep_shares SET
        active = EXISTS (SELECT 1 FROM jobs WHERE state = 'queued' AND last_sweep = sweep_shares.sweep_id),
        seq = (SELECT rowid FROM sweeps WHERE id = sweep_shares.sweep_id);
    CREATE INDEX sweep_shares_turns ON sweep_shares (running / priority, last_served, seq)
        WHERE active = 1;
    INSERT INTO counters (name, value) SELECT 'turns', COALESCE(MAX(last_served), 0) + 1 FROM sweep_shares;
    CREATE TRIGGER jobs_queued_activates AFTER UPDATE OF state, last_sweep ON jobs
    WHEN new.state = 'queued'
    BEGIN
        UPDATE sweep_shares SET active = 1 WHERE sweep_id = new.last_sweep AND active = 0;
    END;
    "#,
    // 26: running counts only where they decide something. A job leased while its sweep competes
    // with another, or under a cap, is `counted` (its sweep's `running` holds it, and the triggers
    // take it off when it stops or move it with its sweep); a job leased by a sweep alone and
    // uncapped is not, and costs no count upkeep. Jobs leased before this migration were counted.
    r#"
    ALTER TABLE jobs ADD COLUMN counted INTEGER NOT NULL DEFAULT 1;
    DROP TRIGGER jobs_running_ended;
    DROP TRIGGER jobs_running_moved;
    CREATE TRIGGER jobs_running_ended AFTER UPDATE OF state ON jobs
    WHEN old.state = 'leased' AND new.state IS NOT 'leased' AND old.counted = 1
    BEGIN
        UPDATE sweep_shares SET running = running - 1 WHERE sweep_id = old.last_sweep;
    END;
    CREATE TRIGGER jobs_running_moved AFTER UPDATE OF last_sweep ON jobs
    WHEN old.state = 'leased' AND new.state = 'leased' AND old.counted = 1
     AND old.last_sweep IS NOT new.last_sweep
    BEGIN
        UPDATE sweep_shares SET running = running - 1 WHERE sweep_id = old.last_sweep;
        UPDATE sweep_shares SET running = running + 1 WHERE sweep_id = new.last_sweep;
    END;
    "#,
    // 27: the job's two hot updates (lease, done) carry no trigger. A trigger on `state` ran a
    // sub-program for every lease and completion, its WHEN false for most (~2 kB frame each) and
    // its statement journal besides. Now `counted` is 1 only while a job is leased into its
    // sweep's count: every update that ends a lease clears it, and clearing it takes the job off
    // (an uncounted completion names no watched column). A job is queued again by a write of
    // `queued_seq` (or of its sweep), which marks its sweep active: requeues give it a new place,
    // promotions write it unchanged. `store_cost`: see coordinator/docs/sharing.md.
    r#"
    UPDATE jobs SET counted = 0 WHERE state <> 'leased';
    DROP TRIGGER jobs_running_ended;
    CREATE TRIGGER jobs_running_ended AFTER UPDATE OF counted ON jobs
    WHEN old.counted = 1 AND new.counted = 0
    BEGIN
        UPDATE sweep_shares SET running = running - 1 WHERE sweep_id = old.last_sweep;
    END;
    DROP TRIGGER jobs_queued_activates;
    CREATE TRIGGER jobs_queued_activates AFTER UPDATE OF queued_seq, last_sweep ON jobs
    WHEN new.state = 'queued'
    BEGIN
        UPDATE sweep_shares SET active = 1 WHERE sweep_id = new.last_sweep AND active = 0;
    END;
    "#,
];
