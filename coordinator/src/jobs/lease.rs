//! Leasing: the queue, granting leases, heartbeats, expiry, and the fencing check ([`current`])
//! that every report, completion and failure goes through.

use rusqlite::{OptionalExtension, Transaction, params};

use super::cancel::{cancel_job, cancelled_everywhere};
use super::checkpoints;
use super::rows::{corrupt, job_columns, job_from_row};
use super::share::Shares;
use super::workers::touch_worker;
use super::{Job, JobState, LeaseGrant, Millis};
use crate::Error;
use crate::store::{exec, one};
use jetsweep_proto::limits::MAX_PACK;
use jetsweep_proto::worker_id::worker_name;

/// How many times a job may lose its worker (its lease expires: the machine died, the network
/// went) before it is failed. Larger than any sensible `attempts`: a dying machine is not the
/// job's fault, but a job that kills every machine it lands on must still stop somewhere.
pub const MAX_LOST: u32 = 20;

/// The next place at the end of the queue.
pub(super) fn next_seq(tx: &Transaction<'_>) -> Result<i64, Error> {
    Ok(one(
        tx,
        "SELECT COALESCE(MAX(queued_seq), 0) + 1 FROM jobs",
        [],
        |r| r.get(0),
    )?)
}

/// Returns expired leases' jobs to the queue (or fails them on their last attempt). Returns how many.
pub fn expire_leases(tx: &Transaction<'_>, now: Millis) -> Result<usize, Error> {
    lose_leases(tx, now, "expired", now, |lease, worker| {
        format!(
            "lease {lease} expired: worker {} stopped reporting",
            worker_name(worker)
        )
    })
}

/// Hands every lease back at once, as if each worker had released its jobs: `jetsweep run`
/// stopped at once has killed its workers, and owns the coordinator, so their jobs need not wait
/// for their leases to expire. Returns how many were queued again (or failed, past their
/// lost-worker limit).
pub fn release_all(tx: &Transaction<'_>, why: &str, now: Millis) -> Result<usize, Error> {
    lose_leases(tx, Millis::MAX, "released", now, |_, worker| {
        format!("worker {} stopped: {why}", worker_name(worker))
    })
}

/// Ends, as lost workers ([`lose_worker`] with `outcome`), every lease expiring before
/// `expiring_before`, each with the reason `why(lease, worker)`. Returns how many.
fn lose_leases(
    tx: &Transaction<'_>,
    expiring_before: Millis,
    outcome: &str,
    now: Millis,
    why: impl Fn(&str, &str) -> String,
) -> Result<usize, Error> {
    let lost: Vec<(String, String, String, u32, u32)> = tx
        .prepare_cached("SELECT id, lease_id, worker_id, lost, max_lost FROM jobs WHERE state = 'leased' AND lease_expires_ms < ?1")?
        .query_map([expiring_before], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?
        .collect::<Result<_, _>>()?;
    for (job, lease, worker, lost_before, max_lost) in &lost {
        let why = why(lease, worker);
        lose_worker(tx, job, lease, *lost_before, *max_lost, &why, outcome, now)?;
    }
    Ok(lost.len())
}

/// Ends an attempt whose worker is gone (`outcome`: its lease expired, or it handed the job back):
/// the job is queued again unless it has lost [`MAX_LOST`] workers. Returns true if requeued.
#[allow(clippy::too_many_arguments)]
pub(super) fn lose_worker(
    tx: &Transaction<'_>,
    job: &str,
    lease: &str,
    lost: u32,
    max_lost: u32,
    why: &str,
    outcome: &str,
    now: Millis,
) -> Result<bool, Error> {
    let lost = lost + 1;
    let why = format!("{why} (worker lost {lost} of {max_lost} times)");
    let retry = lost < max_lost;
    tracing::info!(job = %job, lease = %lease, lost, requeued = retry, outcome, "worker lost");
    exec(
        tx,
        "UPDATE jobs SET lost = ?2 WHERE id = ?1",
        params![job, lost],
    )?;
    end_attempt(tx, job, lease, outcome, Some(&why), retry, now)?;
    if !retry {
        // Failed for good: its seed leaves its point's mean, which may complete a rung.
        let max_epochs: u32 = one(
            tx,
            "SELECT max_epochs FROM jobs WHERE id = ?1",
            [job],
            |r| r.get(0),
        )?;
        super::halving::after_failure(tx, job, max_epochs, now)?;
    }
    Ok(retry)
}

/// Gives every running lease one lease timeout from `now` (a coordinator that just started): while
/// it was away, workers could not heartbeat, and their leases must not expire for that. Returns how
/// many leases were extended.
pub fn extend_leases_after_start(tx: &Transaction<'_>, now: Millis) -> Result<usize, Error> {
    Ok(exec(
        tx,
        "UPDATE jobs SET lease_expires_ms = MAX(lease_expires_ms, ?1 + lease_ttl_ms) WHERE state = 'leased'",
        [now],
    )?)
}

/// Ends the current attempt; the job goes back to the queue if `retry`, else it fails with `error`.
pub(super) fn end_attempt(
    tx: &Transaction<'_>,
    job: &str,
    lease: &str,
    outcome: &str,
    error: Option<&str>,
    retry: bool,
    now: Millis,
) -> Result<(), Error> {
    exec(
        tx,
        "UPDATE attempts SET ended_ms = ?2, outcome = ?3, error = ?4 WHERE lease_id = ?1",
        params![lease, now, outcome, error],
    )?;
    if retry {
        let seq = next_seq(tx)?;
        exec(
            tx,
            "UPDATE jobs SET state = 'queued', queued_seq = ?2, lease_id = NULL, worker_id = NULL, lease_expires_ms = NULL, counted = 0, updated_ms = ?3 WHERE id = ?1",
            params![job, seq, now],
        )?;
    } else {
        fail_job_row(tx, job, error.unwrap_or_default(), now)?;
    }
    Ok(())
}

/// Marks a job failed for good, with the reason kept.
fn fail_job_row(tx: &Transaction<'_>, job: &str, error: &str, now: Millis) -> Result<(), Error> {
    checkpoints::discard(tx, job)?;
    exec(
        tx,
        "UPDATE jobs SET state = 'failed', error = ?2, lease_id = NULL, worker_id = NULL, lease_expires_ms = NULL, counted = 0, updated_ms = ?3 WHERE id = ?1",
        params![job, error, now],
    )?;
    Ok(())
}

/// Leases up to `max` queued jobs to `worker`, one per slot, oldest first, after expiring overdue
/// leases.
pub fn lease_jobs(
    tx: &Transaction<'_>,
    worker: &str,
    max: u32,
    now: Millis,
) -> Result<Vec<LeaseGrant>, Error> {
    Ok(lease_jobs_for(tx, worker, Ask::one_each(max), None, now)?
        .into_iter()
        .flatten()
        .collect())
}

/// The leases of one slot: jobs that train together, the oldest first.
pub type Pack = Vec<LeaseGrant>;

/// How much work a worker asks for: `slots` packs of up to `pack` jobs each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ask {
    pub slots: u32,
    pub pack: u32,
}

impl Ask {
    /// One job per slot (a worker that does not pack).
    pub fn one_each(slots: u32) -> Self {
        Ask { slots, pack: 1 }
    }
}

/// The update that leases a job to worker `?1` at time `?2` (the statements add which job). A
/// job leased into its sweep's running count is marked `counted` (migration 27: the mark's
/// clearing takes it off again); a job leased uncounted leaves the column alone (it is 0 on every
/// job not leased), so the statement carries no trigger at all.
macro_rules! lease_job {
    (uncounted) => {
        "UPDATE jobs SET state = 'leased', attempts = attempts + 1, lease_id = printf('%012d.%s.%d', queued_seq, id, attempts + 1), worker_id = ?1,
             lease_expires_ms = ?2 + lease_ttl_ms, epochs_done = 0, latest_json = NULL, updated_ms = ?2"
    };
    (counted) => {
        concat!(lease_job!(uncounted), ", counted = 1")
    };
}

/// Where a lease takes its job: `?3` names the sweep whose oldest queued job it takes.
macro_rules! oldest_of_sweep {
    () => {
        " WHERE id = (SELECT id FROM jobs WHERE state = 'queued' AND last_sweep = ?3 ORDER BY queued_seq LIMIT 1) RETURNING "
    };
}

/// Where a pack-mate's lease takes its job: `?3` names it, still queued.
macro_rules! named_queued {
    () => {
        " WHERE id = ?3 AND state = 'queued' RETURNING "
    };
}

/// How far down the queue a pack looks for jobs that train with its first one: leasing costs the
/// same however long the queue is, and a sweep's compatible jobs sit close together in it.
const PACK_SCAN: u32 = 4096;

/// Leases `ask.slots` packs to `worker` after expiring overdue leases: each pack is the oldest
/// queued job of the sweep whose turn it is (the fair share, [`Shares`]) and, when it is a first
/// attempt and `ask.pack` > 1, up to `ask.pack - 1` more of that sweep's queued first attempts
/// that train with it (the same `pack_key` — `Hyperparameters::pack_key` — and dataset), oldest
/// first among its next [`PACK_SCAN`] queued, within the sweep's `max_running`. A job that may resume from saved
/// state is leased alone. Each job gets its own lease, as always; at most [`MAX_PACK`] leases in
/// all. `request_id`, and the pack's first lease, are recorded with each lease.
pub(super) fn lease_jobs_for(
    tx: &Transaction<'_>,
    worker: &str,
    ask: Ask,
    request_id: Option<&str>,
    now: Millis,
) -> Result<Vec<Pack>, Error> {
    touch_worker(tx, worker, now)?;
    expire_leases(tx, now)?;
    let shares = Shares::for_worker(worker);
    // One statement takes a sweep's oldest queued job and returns it, already leased; the other
    // takes a named queued job. Each in two forms: into the running count or not.
    let oldest = [
        concat!(lease_job!(uncounted), oldest_of_sweep!(), job_columns!()),
        concat!(lease_job!(counted), oldest_of_sweep!(), job_columns!()),
    ];
    let named = [
        concat!(lease_job!(uncounted), named_queued!(), job_columns!()),
        concat!(lease_job!(counted), named_queued!(), job_columns!()),
    ];
    let mut mates_of = tx.prepare_cached(
        "SELECT q.id FROM (SELECT id, pack_key, dataset_sha256, attempts
                           FROM jobs WHERE state = 'queued' AND last_sweep = ?4 ORDER BY queued_seq LIMIT ?3) q
                 JOIN jobs h ON h.id = ?1
          WHERE q.attempts = 0 AND q.pack_key = h.pack_key AND q.dataset_sha256 = h.dataset_sha256
          LIMIT ?2",
    )?;
    let pack = ask.pack.clamp(1, MAX_PACK);
    let mut packs: Vec<Pack> = Vec::new();
    let mut leases = 0;
    while (packs.len() as u32) < ask.slots && leases < MAX_PACK as usize {
        let Some(turn) = shares.next(tx)? else {
            break;
        };
        let sweep = turn.sweep.clone();
        let counted = usize::from(turn.counts());
        let Some((id, job)) = tx
            .prepare_cached(oldest[counted])?
            .query_row(params![worker, now, sweep], |r| {
                Ok((r.get::<_, String>(0)?, job_from_row(r)?))
            })
            .optional()?
        else {
            shares.drop_sweep(tx, &sweep)?;
            continue;
        };
        let Some(head) = grant(tx, worker, id, job, request_id, None, now)? else {
            shares.record(tx, &turn, 1)?;
            continue;
        };
        let first_attempt = head.attempt == 1;
        let head_id = head.job.id.clone();
        let head_lease = head.lease_id.clone();
        leases += 1;
        let mut grants = vec![head];
        let room = (pack - 1)
            .min(MAX_PACK - leases as u32)
            .min(turn.room.saturating_sub(1));
        if !first_attempt || room == 0 {
            shares.record(tx, &turn, 1)?;
            packs.push(grants);
            continue;
        }
        let mates: Vec<String> = mates_of
            .query_map(params![head_id, room, PACK_SCAN, sweep], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        // Every job taken counts as leased here; one whose row cannot be read is failed by
        // `grant`, and its trigger takes it off again.
        let mut taken_jobs = 1;
        let mut take_named = tx.prepare_cached(named[counted])?;
        for mate in mates {
            let taken = take_named
                .query_row(params![worker, now, mate], |r| {
                    Ok((r.get::<_, String>(0)?, job_from_row(r)?))
                })
                .optional()?;
            let Some((id, job)) = taken else { continue };
            taken_jobs += 1;
            if let Some(g) = grant(tx, worker, id, job, request_id, Some(&head_lease), now)? {
                grants.push(g);
                leases += 1;
            }
        }
        shares.record(tx, &turn, taken_jobs)?;
        packs.push(grants);
    }
    Ok(packs)
}

/// Records the attempt of a job just leased (in the pack whose first lease is `pack_lease`; `None`:
/// it is that first lease) and returns its grant; a row that cannot be read back fails alone
/// (`None`): the job is set aside and the queue moves on.
fn grant(
    tx: &Transaction<'_>,
    worker: &str,
    id: String,
    job: Result<Job, Error>,
    request_id: Option<&str>,
    pack_lease: Option<&str>,
    now: Millis,
) -> Result<Option<LeaseGrant>, Error> {
    let job = match job {
        Ok(job) => job,
        Err(e) => {
            tracing::warn!(job = %id, error = %e, "queued job unreadable; failed so the queue moves on");
            fail_job_row(tx, &id, &format!("the stored job cannot be read: {e}"), now)?;
            return Ok(None);
        }
    };
    let JobState::Leased {
        lease, expires_at, ..
    } = &job.state
    else {
        return Err(corrupt("lease", format!("job {} was not leased", job.id)));
    };
    let (lease_id, expires_at) = (lease.clone(), *expires_at);
    exec(
        tx,
        "INSERT INTO attempts (lease_id, job_id, attempt, worker_id, started_ms, request_id, pack_lease) VALUES (?1, ?2, ?3, ?4, ?5, ?6, COALESCE(?7, ?1))",
        params![
            lease_id,
            job.id,
            job.attempts,
            worker,
            now,
            request_id,
            pack_lease
        ],
    )?;
    // Only a job granted before can have saved state.
    let resume_epoch = if job.attempts > 1 {
        checkpoints::resume_point(tx, &job.id)?
    } else {
        None
    };
    Ok(Some(LeaseGrant {
        lease_id,
        attempt: job.attempts,
        expires_at,
        resume_epoch,
        job,
    }))
}

/// The job a current lease holds: what the lifecycle rules need of it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Held {
    pub job_id: String,
    pub lease_id: String,
    /// The job's own failures so far, this attempt included (leases that expired are not its
    /// failures), and how many it may have.
    pub failures: u32,
    pub max_attempts: u32,
    /// Epochs the trial runs: reports of epochs past it are refused.
    pub max_epochs: u32,
    /// Workers the job has lost so far, and how many it may lose.
    pub lost: u32,
    pub max_lost: u32,
    /// It is in its sweep's running count (`jobs.counted`): ending it must clear the mark.
    pub counted: bool,
}

/// The job of `lease_id` if that lease is current and was granted to `worker`; expires it first
/// if it is overdue.
pub(super) fn current(
    tx: &Transaction<'_>,
    lease_id: &str,
    worker: &str,
    now: Millis,
) -> Result<Held, Error> {
    let job_id = job_of_lease(lease_id);
    let stale = |reason: String| Error::StaleLease {
        lease_id: lease_id.to_string(),
        reason,
    };
    // (state, lease, holder, expiry), the counts and the running-count mark: what the rules need.
    type LeaseRow = (
        (String, Option<String>, Option<String>, Option<Millis>),
        (u32, u32, u32, u32, u32, bool),
    );
    let row: Option<LeaseRow> = tx
        .prepare_cached(
            "SELECT state, lease_id, worker_id, lease_expires_ms, attempts - lost, max_attempts, max_epochs, lost, max_lost, counted FROM jobs WHERE id = ?1",
        )?
        .query_row([job_id], |r| {
            Ok((
                (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?),
                (r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?, r.get(8)?, r.get(9)?),
            ))
        })
        .optional()?;
    let Some((
        (state, lease, holder, expires_at),
        (failures, max_attempts, max_epochs, lost, max_lost, counted),
    )) = row
    else {
        return Err(stale("no such job".into()));
    };
    match (state.as_str(), lease, expires_at) {
        ("leased", Some(lease), Some(expires_at)) if lease == lease_id => {
            if holder.as_deref() != Some(worker) {
                return Err(Error::NotYourLease {
                    lease_id: lease_id.to_string(),
                });
            }
            if expires_at < now {
                expire_leases(tx, now)?;
                return Err(stale(format!("it expired at {expires_at} (now {now})")));
            }
            Ok(Held {
                job_id: job_id.to_string(),
                lease_id: lease,
                failures,
                max_attempts,
                max_epochs,
                lost,
                max_lost,
                counted,
            })
        }
        ("leased", Some(lease), _) => Err(stale(format!("the job was leased again as {lease}"))),
        (state, _, _) => Err(stale(format!("the job is {state}"))),
    }
}

/// Extends the worker's current leases; returns the named leases that are not current (stop those).
/// `leaving`: the worker's goodbye (it exits cleanly), kept so lists show it as left.
pub fn heartbeat(
    tx: &Transaction<'_>,
    worker: &str,
    lease_ids: &[String],
    leaving: bool,
    now: Millis,
) -> Result<Vec<String>, Error> {
    touch_worker(tx, worker, now)?;
    if leaving {
        exec(
            tx,
            "UPDATE workers SET left_ms = ?2 WHERE id = ?1",
            params![worker, now],
        )?;
        tracing::info!(worker = %jetsweep_proto::worker_id::worker_name(worker), "worker left");
    }
    let mut stale = Vec::new();
    for lease in lease_ids {
        match current(tx, lease, worker, now) {
            Ok(held) if cancelled_everywhere(tx, &held.job_id)? => {
                cancel_job(tx, &held.job_id, Some(&held.lease_id), now)?;
                super::halving::after_end(tx, &held.job_id, now)?;
                stale.push(lease.clone());
            }
            Ok(held) => {
                exec(
                    tx,
                    "UPDATE jobs SET lease_expires_ms = ?2 + lease_ttl_ms WHERE id = ?1",
                    params![held.job_id, now],
                )?;
            }
            Err(Error::StaleLease { .. } | Error::NotYourLease { .. }) => stale.push(lease.clone()),
            Err(e) => return Err(e),
        }
    }
    Ok(stale)
}

/// The job id inside a lease id, `SEQ.JOB.ATTEMPT`: SEQ is the job's place in the queue,
/// zero-padded, so leases sort in the order they were granted and the store's lease-keyed indexes
/// grow at one end (random keys cost 2.5x the bytes written per job); JOB and ATTEMPT fence reports.
/// Ids of the older form `JOB.ATTEMPT` are read too.
pub fn job_of_lease(lease_id: &str) -> &str {
    let mut parts = lease_id.split('.');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(_seq), Some(job), Some(_attempt)) => job,
        (Some(job), _, _) => job,
        _ => lease_id,
    }
}
