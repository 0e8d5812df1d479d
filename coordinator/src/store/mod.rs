//! The coordinator's durable state: one SQLite file (bundled SQLite, WAL journal), with versioned
//! schema migrations. Every state change is a committed transaction before it is acknowledged.
//!
//! Tables: `sweeps`; `jobs` (one row per distinct job identity, shared by every sweep that contains
//! it); `sweep_jobs` (which jobs a sweep has, in grid order); `attempts` (one row per lease);
//! `epochs` (per-epoch metrics of each attempt); `workers`.
//!
//! - [`migrations`]: the schema, version by version.
//! - [`writer`]: the one writer thread that group-commits every state change.
//! - [`lock`]: one coordinator per state file.
//! - [`exec`], [`one`]: statements through the connection's statement cache.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, Transaction};

use crate::Error;
use migrations::MIGRATIONS;

pub mod lock;
mod migrations;
pub mod writer;

/// Runs a statement through the connection's statement cache (the hot paths run the same few
/// statements thousands of times; preparing each anew was a sixth of the coordinator's CPU).
pub(crate) fn exec<P: rusqlite::Params>(
    tx: &Transaction<'_>,
    sql: &str,
    params: P,
) -> rusqlite::Result<usize> {
    tx.prepare_cached(sql)?.execute(params)
}

/// One row of a cached statement.
pub(crate) fn one<T, P: rusqlite::Params>(
    tx: &Transaction<'_>,
    sql: &str,
    params: P,
    f: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    tx.prepare_cached(sql)?.query_row(params, f)
}

/// How long a writer waits for SQLite's lock before giving up: longer than any one transaction here.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Page cache per connection, in KiB (a fixed bound: memory does not grow with finished jobs). The
/// default 2 MiB is smaller than the pages a sweep of 20,000 jobs keeps touching; at 10,000 jobs/s
/// the misses tripled the writer's time per job and put lease p99 at 15 ms instead of 3.
const CACHE_KIB: i64 = 64 * 1024;

/// Size the WAL file is cut back to once it has been copied into the main file.
const WAL_LIMIT_BYTES: i64 = 64 << 20;

/// Prepared statements kept per connection (the lifecycle uses about 30).
const STATEMENT_CACHE: usize = 64;

/// The open store.
pub struct Store {
    conn: Connection,
    /// The state file; `None` for an in-memory store.
    path: Option<PathBuf>,
}

impl Store {
    /// Opens (creating if needed) the state file and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Store, Error> {
        let conn = Connection::open(path).map_err(|e| Error::Open {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let mut store = Self::init(conn)?;
        store.path = Some(path.to_path_buf());
        Ok(store)
    }

    /// A second connection to the same file, for reads: in WAL mode readers see the last commit
    /// and never wait for the writer.
    pub fn open_reader(&self) -> Result<Store, Error> {
        let path = self.path.as_deref().ok_or_else(|| {
            Error::Unavailable("an in-memory store has no second connection".into())
        })?;
        Store::open(path)
    }

    /// An in-memory store, for tests.
    pub fn in_memory() -> Result<Store, Error> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<Store, Error> {
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // The query planner stability guarantee: a cached statement keeps its plan whatever is
        // bound to it. Without it SQLite (built with STAT4) compiled some statements again on
        // every call once the bound values changed (`job_epochs` at every completion): a fifth of
        // the store's instructions per job (coordinator/docs/throughput.md).
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
            true,
        )?;
        // Room for every statement the job lifecycle uses, so none is prepared twice.
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        // WAL: readers never block the writer; synchronous=FULL: a commit survives power loss.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // The writer runs each request in a savepoint, whose undo pages would otherwise go to a
        // temporary file: about 50 KB of writes per job.
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        conn.pragma_update(None, "cache_size", -CACHE_KIB)?;
        // After the WAL starts afresh, cut its file back to this size (a big submit can leave it
        // at hundreds of MB).
        conn.pragma_update(None, "journal_size_limit", WAL_LIMIT_BYTES)?;
        let version =
            conn.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))? as usize;
        if version > MIGRATIONS.len() {
            return Err(Error::NewerSchema {
                found: version,
                known: MIGRATIONS.len(),
            });
        }
        if version < MIGRATIONS.len() {
            // A migration may rebuild a table others refer to: SQLite's procedure is to switch
            // foreign keys off (outside any transaction), migrate, check them, switch them on.
            conn.pragma_update(None, "foreign_keys", "OFF")?;
            for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
                let tx = conn.transaction()?;
                tx.execute_batch(sql)?;
                let broken: i64 =
                    tx.query_row("SELECT COUNT(*) FROM pragma_foreign_key_check", [], |r| {
                        r.get(0)
                    })?;
                if broken > 0 {
                    return Err(Error::Corrupt(format!(
                        "schema migration {} left {broken} broken references; the state file is unchanged",
                        i + 1
                    )));
                }
                tx.pragma_update(None, "user_version", (i + 1) as i64)?;
                tx.commit()?;
            }
            conn.pragma_update(None, "foreign_keys", "ON")?;
        }
        Ok(Store { conn, path: None })
    }

    /// Runs `f` in one immediate (write-locked) transaction and commits it if `f` succeeds.
    pub fn write<T>(
        &mut self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let tx = self.begin()?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// An immediate (write-locked) transaction, for a caller that commits or rolls back itself.
    pub fn begin(&mut self) -> Result<Transaction<'_>, Error> {
        Ok(self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?)
    }

    /// Runs `f` over a read transaction (a consistent snapshot).
    pub fn read<T>(
        &mut self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let tx = self.conn.transaction()?;
        f(&tx)
    }

    /// Leaves checkpoints (copying the WAL back into the main file, with its fsync) to whoever
    /// calls [`Store::checkpoint`], so that commits on this connection never wait for one.
    pub fn leave_checkpoints_to_others(&self) -> Result<(), Error> {
        self.conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        Ok(())
    }

    /// Copies what it can of the WAL into the main file without waiting for the writer or readers.
    pub fn checkpoint(&self) -> Result<(), Error> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
        Ok(())
    }

    /// The schema version in the file.
    pub fn schema_version(&self) -> Result<usize, Error> {
        Ok(self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))? as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_apply_once_and_a_newer_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        assert_eq!(
            Store::open(&path).unwrap().schema_version().unwrap(),
            MIGRATIONS.len()
        );
        // Opening again applies nothing and keeps the version.
        assert_eq!(
            Store::open(&path).unwrap().schema_version().unwrap(),
            MIGRATIONS.len()
        );
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let err = Store::open(&path).err().unwrap().to_string();
        assert!(err.contains("99"), "{err}");
    }

    /// A state file written by an older jetsweep (schema 3, with a sweep, jobs and an attempt)
    /// comes through the table rebuild of migration 4 whole, and the new check still refuses a
    /// state that does not exist.
    #[test]
    fn an_older_state_file_keeps_its_jobs_through_the_rebuild() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let conn = Connection::open(&path).unwrap();
        for sql in &MIGRATIONS[..3] {
            conn.execute_batch(sql).unwrap();
        }
        conn.execute_batch(
            "PRAGMA user_version = 3;
             INSERT INTO sweeps VALUES ('s-1', 's', '', 'synthetic', 'ab', 1, 1, 'train-as-val', 3, 5000, 1, 0);
             INSERT INTO jobs (id, model, optimizer, batch_size, max_epochs, learning_rate, seed, dataset_sha256, state, queued_seq, max_attempts, lease_ttl_ms, updated_ms)
                 VALUES ('j1', 'jsc-tiny', 'adam', 128, 2, 0.001, 0, 'ab', 'queued', 1, 3, 5000, 1),
                        ('j2', 'jsc-tiny', 'adam', 128, 2, 0.001, 1, 'ab', 'leased', 2, 3, 5000, 1);
             INSERT INTO sweep_jobs VALUES ('s-1', 'j1', 0, 0), ('s-1', 'j2', 1, 0);
             INSERT INTO attempts (lease_id, job_id, attempt, worker_id, started_ms) VALUES ('j2.1', 'j2', 1, 'w', 1);",
        )
        .unwrap();
        drop(conn);

        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len());
        let rows: Vec<(String, String)> = store
            .conn
            .prepare("SELECT id, state FROM jobs ORDER BY queued_seq")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            rows,
            [
                ("j1".into(), "queued".into()),
                ("j2".into(), "leased".into())
            ]
        );
        let check = store
            .conn
            .execute("UPDATE jobs SET state = 'running' WHERE id = 'j1'", [])
            .unwrap_err();
        assert!(check.to_string().contains("CHECK"), "{check}");
        // References from other tables still hold, and are enforced again.
        let fk = store
            .conn
            .execute(
                "INSERT INTO attempts (lease_id, job_id, attempt, worker_id, started_ms) VALUES ('x.1', 'nope', 1, 'w', 1)",
                [],
            )
            .unwrap_err();
        assert!(fk.to_string().contains("FOREIGN KEY"), "{fk}");
    }

    /// Jobs finished before migration 11 get their epoch summary from their stored epochs, each
    /// epoch as its latest attempt reported it; a job missing an epoch gets none.
    #[test]
    fn migration_11_summarises_the_epochs_of_jobs_finished_before() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let conn = Connection::open(&path).unwrap();
        for sql in &MIGRATIONS[..10] {
            conn.execute_batch(sql).unwrap();
        }
        let epoch = |n: u32, val_loss: f64, seconds: f64| {
            format!(
                r#"{{"epoch":{n},"lr":0.001,"train_loss":{},"train_acc":0.5,"val_loss":{val_loss},"val_acc":0.6,"test_loss":0.7,"test_acc":0.5,"seconds":{seconds},"samples_per_second":100.0}}"#,
                0.1 * f64::from(n)
            )
        };
        conn.execute_batch(
            "PRAGMA user_version = 10;
             INSERT INTO sweeps VALUES ('s-1', 's', '', 'synthetic', 'ab', 1, 1, 'train-as-val', 3, 5000, 1, 0);
             INSERT INTO jobs (id, model, optimizer, batch_size, max_epochs, learning_rate, seed, dataset_sha256, state, queued_seq, max_attempts, lease_ttl_ms, updated_ms, result_json)
                 VALUES ('j1', 'jsc-tiny', 'adam', 128, 3, 0.001, 0, 'ab', 'done', 1, 3, 5000, 1, '{\"params\":117,\"test_acc\":0.5,\"best_epoch\":2,\"best_test_acc\":0.5}'),
                        ('j2', 'jsc-tiny', 'adam', 128, 3, 0.001, 1, 'ab', 'done', 2, 3, 5000, 1, '{\"params\":117,\"test_acc\":0.5,\"best_epoch\":2,\"best_test_acc\":0.5}');
             INSERT INTO attempts (lease_id, job_id, attempt, worker_id, started_ms) VALUES ('j1.1', 'j1', 1, 'w', 1), ('j1.2', 'j1', 2, 'w', 2), ('j2.1', 'j2', 1, 'w', 1);",
        )
        .unwrap();
        let mut insert = conn
            .prepare("INSERT INTO epochs (lease_id, epoch, metrics_json) VALUES (?1, ?2, ?3)")
            .unwrap();
        for (lease, n, val_loss, seconds) in [
            ("j1.1", 1, 0.9, 1.0),
            ("j1.1", 2, 0.8, 2.0),
            ("j1.2", 2, 0.5, 4.0),
            ("j1.2", 3, 0.6, 8.0),
            // j2 never reported epoch 1.
            ("j2.1", 2, 0.5, 1.0),
            ("j2.1", 3, 0.5, 1.0),
        ] {
            insert
                .execute(rusqlite::params![lease, n, epoch(n, val_loss, seconds)])
                .unwrap();
        }
        drop(insert);
        drop(conn);

        let store = Store::open(&path).unwrap();
        let summary = |id: &str| -> Option<jetsweep_proto::metrics::EpochSummary> {
            store
                .conn
                .query_row("SELECT summary_json FROM jobs WHERE id = ?1", [id], |r| {
                    r.get::<_, Option<String>>(0)
                })
                .unwrap()
                .map(|j| serde_json::from_str(&j).unwrap())
        };
        let s = summary("j1").expect("every epoch is there");
        assert_eq!(
            (
                s.best_val_loss,
                s.best_val_acc,
                s.train_seconds,
                s.samples_per_second
            ),
            (0.5, 0.6, 13.0, 100.0)
        );
        assert!((s.final_train_loss - 0.3).abs() < 1e-12 && s.final_test_loss == 0.7);
        assert_eq!(summary("j2"), None, "epoch 1 is missing");
    }
}
