//! The job lifecycle, as plain synchronous functions over one store transaction. Each takes `now`
//! (Unix milliseconds) as an argument, so the rules are tested without sockets or sleeps.
//!
//! ```text
//! queued ──lease──▶ leased ──complete──▶ done
//!    ▲                │ │
//!    └── fail/expiry ─┘ └── fail/expiry on the last attempt ──▶ failed
//! queued/leased ──cancel (all of the job's sweeps cancelled)──▶ cancelled
//! ```
//!
//! Fencing: a lease id is `SEQ.JOB.ATTEMPT`. Only the job's current lease may report, extend, complete or
//! fail it; once a lease expires the job is queued again under a higher attempt number, so a slow or
//! partitioned worker's late reports are refused and can never write a second result. Completing twice
//! with the same lease is harmless.

use rusqlite::{OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};

use crate::StoreError;
use crate::sweep::{SweepSpec, Trial, job_id};

/// Unix time in milliseconds.
pub type Millis = i64;

/// A prepared dataset, named by its content hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetRef {
    pub spec: String,
    pub sha256: String,
    pub bytes: u64,
    pub synthetic: bool,
    /// `train-as-val` or `held-out`.
    pub validation: String,
}

/// One epoch as a worker reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochReport {
    pub epoch: u32,
    pub lr: f64,
    pub train_loss: f64,
    pub train_acc: f64,
    pub val_loss: f64,
    pub val_acc: f64,
    pub test_loss: f64,
    pub test_acc: f64,
    pub seconds: f64,
    pub samples_per_second: f64,
}

/// A finished trial's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialResult {
    pub params: u64,
    pub test_acc: f64,
    pub best_epoch: u32,
    pub best_test_acc: f64,
}

/// Where a job is, with the data that state carries.
#[derive(Debug, Clone, PartialEq)]
pub enum JobState {
    Queued,
    Leased {
        worker: String,
        lease: String,
        expires_at: Millis,
    },
    Done {
        result: TrialResult,
    },
    Failed {
        error: String,
    },
    Cancelled {
        reason: String,
    },
}

impl JobState {
    pub fn name(&self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Leased { .. } => "leased",
            JobState::Done { .. } => "done",
            JobState::Failed { .. } => "failed",
            JobState::Cancelled { .. } => "cancelled",
        }
    }
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: String,
    pub trial: Trial,
    pub dataset_sha256: String,
    pub state: JobState,
    pub attempts: u32,
    pub max_attempts: u32,
    pub epochs_done: u32,
    pub latest: Option<EpochReport>,
}

/// What a worker gets when it leases a job.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaseGrant {
    pub lease_id: String,
    pub job: Job,
    pub attempt: u32,
    pub expires_at: Millis,
}

/// A sweep's counts by state.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SweepCounts {
    pub id: String,
    pub name: String,
    pub created_ms: Millis,
    pub dataset: Option<DatasetRef>,
    pub total: u32,
    pub queued: u32,
    pub leased: u32,
    pub done: u32,
    pub failed: u32,
    pub cancelled: u32,
    pub reused: u32,
    pub cancel_requested: bool,
}

impl SweepCounts {
    /// Every job has ended (done, failed or cancelled).
    pub fn finished(&self) -> bool {
        self.queued == 0 && self.leased == 0
    }
}

/// Runs a statement through the connection's statement cache (the hot paths run the same few
/// statements thousands of times; preparing each anew was a sixth of the coordinator's CPU).
fn exec<P: rusqlite::Params>(
    tx: &Transaction<'_>,
    sql: &str,
    params: P,
) -> rusqlite::Result<usize> {
    tx.prepare_cached(sql)?.execute(params)
}

/// One row of a cached statement.
fn one<T, P: rusqlite::Params>(
    tx: &Transaction<'_>,
    sql: &str,
    params: P,
    f: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    tx.prepare_cached(sql)?.query_row(params, f)
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

fn next_seq(tx: &Transaction<'_>) -> Result<i64, StoreError> {
    Ok(one(
        tx,
        "SELECT COALESCE(MAX(queued_seq), 0) + 1 FROM jobs",
        [],
        |r| r.get(0),
    )?)
}

/// Stores a sweep and its jobs. Cells already done (in any earlier sweep) are reused; failed or
/// cancelled ones are queued again with `attempts` more tries (attempt numbers keep counting up, so a
/// lease id is never reused); queued or running ones are shared.
pub fn submit(
    tx: &Transaction<'_>,
    spec: &SweepSpec,
    toml: &str,
    dataset: &DatasetRef,
    now: Millis,
) -> Result<SweepCounts, StoreError> {
    let n: i64 = one(tx, "SELECT COUNT(*) FROM sweeps", [], |r| r.get(0))?;
    let slug: String = spec
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let sweep_id = format!("{}-{}", slug.trim_matches('-'), n + 1);
    let lease_ttl = spec.lease_timeout.as_millis() as i64;
    exec(tx,
        "INSERT INTO sweeps (id, name, spec_toml, dataset_spec, dataset_sha256, dataset_bytes, synthetic, validation, max_attempts, lease_ttl_ms, created_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![sweep_id, spec.name, toml, dataset.spec, dataset.sha256, dataset.bytes as i64, dataset.synthetic, dataset.validation, spec.attempts, lease_ttl, now],
    )?;
    let mut seq = next_seq(tx)?;
    let mut find = tx.prepare_cached("SELECT state FROM jobs WHERE id = ?1")?;
    let mut insert = tx.prepare_cached(
        "INSERT INTO jobs (id, model, optimizer, batch_size, max_epochs, learning_rate, seed, dataset_sha256, state, queued_seq, max_attempts, lease_ttl_ms, updated_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'queued', ?9, ?10, ?11, ?12)",
    )?;
    let mut requeue = tx.prepare_cached(
        "UPDATE jobs SET state = 'queued', queued_seq = ?2, max_attempts = attempts + ?3, lease_ttl_ms = ?4, error = NULL,
         lease_id = NULL, worker_id = NULL, lease_expires_ms = NULL, epochs_done = 0, latest_json = NULL, updated_ms = ?5 WHERE id = ?1",
    )?;
    let mut link = tx.prepare_cached("INSERT OR IGNORE INTO sweep_jobs (sweep_id, job_id, position, reused) VALUES (?1, ?2, ?3, ?4)")?;
    for (position, trial) in spec.trials().iter().enumerate() {
        let id = job_id(trial, &dataset.sha256);
        let state: Option<String> = find.query_row([&id], |r| r.get(0)).optional()?;
        let reused = match state.as_deref() {
            None => {
                insert.execute(params![
                    id,
                    trial.model,
                    trial.optimizer,
                    trial.batch_size,
                    trial.max_epochs,
                    trial.learning_rate,
                    trial.seed as i64,
                    dataset.sha256,
                    seq,
                    spec.attempts,
                    lease_ttl,
                    now
                ])?;
                seq += 1;
                false
            }
            Some("done") => true,
            Some("failed" | "cancelled") => {
                requeue.execute(params![id, seq, spec.attempts, lease_ttl, now])?;
                seq += 1;
                false
            }
            Some(_) => false,
        };
        link.execute(params![sweep_id, id, position as i64, reused])?;
    }
    sweep_counts(tx, &sweep_id)
}

/// A sweep's counts. Errors: NotFound.
pub fn sweep_counts(tx: &Transaction<'_>, sweep_id: &str) -> Result<SweepCounts, StoreError> {
    let mut c = tx
        .query_row(
            "SELECT id, name, created_ms, cancel_requested, dataset_spec, dataset_sha256, dataset_bytes, synthetic, validation FROM sweeps WHERE id = ?1",
            [sweep_id],
            |r| {
                Ok(SweepCounts {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    created_ms: r.get(2)?,
                    cancel_requested: r.get(3)?,
                    dataset: Some(DatasetRef {
                        spec: r.get(4)?,
                        sha256: r.get(5)?,
                        bytes: r.get::<_, i64>(6)? as u64,
                        synthetic: r.get(7)?,
                        validation: r.get(8)?,
                    }),
                    ..SweepCounts::default()
                })
            },
        )
        .optional()?
        .ok_or_else(|| StoreError::NotFound(format!("sweep {sweep_id:?}")))?;
    let mut stmt = tx.prepare_cached(
        "SELECT j.state, COUNT(*), SUM(s.reused) FROM sweep_jobs s JOIN jobs j ON j.id = s.job_id WHERE s.sweep_id = ?1 GROUP BY j.state",
    )?;
    let rows = stmt.query_map([sweep_id], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, u32>(1)?,
            r.get::<_, u32>(2)?,
        ))
    })?;
    for row in rows {
        let (state, n, reused) = row?;
        c.total += n;
        c.reused += reused;
        match state.as_str() {
            "queued" => c.queued = n,
            "leased" => c.leased = n,
            "done" => c.done = n,
            "failed" => c.failed = n,
            _ => c.cancelled = n,
        }
    }
    Ok(c)
}

/// All sweeps, newest first.
pub fn list_sweeps(tx: &Transaction<'_>) -> Result<Vec<SweepCounts>, StoreError> {
    let ids: Vec<String> = tx
        .prepare("SELECT id FROM sweeps ORDER BY created_ms DESC, rowid DESC")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    ids.iter().map(|id| sweep_counts(tx, id)).collect()
}

/// A job's columns, in the order [`job_from_row`] reads them (no name clashes with `sweep_jobs`).
/// A macro so that the statements using it are `concat!`ed at compile time, not built (and
/// hashed for the statement cache) anew on every call.
macro_rules! job_columns {
    () => {
        "id, model, optimizer, batch_size, max_epochs, learning_rate, seed, dataset_sha256, state, \
         attempts, max_attempts, epochs_done, latest_json, lease_id, worker_id, lease_expires_ms, result_json, error"
    };
}

fn job_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Job, StoreError>> {
    let state: String = r.get(8)?;
    let latest: Option<String> = r.get(12)?;
    let result: Option<String> = r.get(16)?;
    let error: Option<String> = r.get(17)?;
    let state = match state.as_str() {
        "queued" => Ok(JobState::Queued),
        "leased" => Ok(JobState::Leased {
            lease: r.get(13)?,
            worker: r.get(14)?,
            expires_at: r.get(15)?,
        }),
        "done" => serde_json::from_str(result.as_deref().unwrap_or(""))
            .map(|result| JobState::Done { result })
            .map_err(|e| corrupt("result", e)),
        "failed" => Ok(JobState::Failed {
            error: error.unwrap_or_default(),
        }),
        _ => Ok(JobState::Cancelled {
            reason: error.unwrap_or_default(),
        }),
    };
    Ok((|| {
        Ok(Job {
            id: r.get(0)?,
            trial: Trial {
                model: r.get(1)?,
                optimizer: r.get(2)?,
                batch_size: r.get(3)?,
                max_epochs: r.get(4)?,
                learning_rate: r.get(5)?,
                seed: r.get::<_, i64>(6)? as u64,
            },
            dataset_sha256: r.get(7)?,
            state: state?,
            attempts: r.get(9)?,
            max_attempts: r.get(10)?,
            epochs_done: r.get(11)?,
            latest: latest
                .map(|l| serde_json::from_str(&l))
                .transpose()
                .map_err(|e| corrupt("epoch", e))?,
        })
    })())
}

fn collect_jobs(
    rows: impl Iterator<Item = rusqlite::Result<Result<Job, StoreError>>>,
) -> Result<Vec<Job>, StoreError> {
    rows.map(|r| r?).collect()
}

/// One job. Errors: NotFound.
pub fn get_job(tx: &Transaction<'_>, job_id: &str) -> Result<Job, StoreError> {
    let mut stmt = tx.prepare_cached(concat!(
        "SELECT ",
        job_columns!(),
        " FROM jobs WHERE id = ?1"
    ))?;
    stmt.query_row([job_id], job_from_row)
        .optional()?
        .ok_or_else(|| StoreError::NotFound(format!("job {job_id:?}")))?
}

/// A page of a sweep's jobs in grid order.
pub fn list_jobs(
    tx: &Transaction<'_>,
    sweep_id: &str,
    offset: u32,
    limit: u32,
) -> Result<Vec<Job>, StoreError> {
    sweep_counts(tx, sweep_id)?;
    let mut stmt = tx.prepare_cached(concat!(
        "SELECT ",
        job_columns!(),
        " FROM sweep_jobs s JOIN jobs j ON j.id = s.job_id WHERE s.sweep_id = ?1 ORDER BY s.position LIMIT ?2 OFFSET ?3"
    ))?;
    collect_jobs(stmt.query_map(params![sweep_id, limit, offset], job_from_row)?)
}

/// Records a worker; returns its id.
pub fn register_worker(
    tx: &Transaction<'_>,
    host: &str,
    device: &str,
    slots: u32,
    now: Millis,
) -> Result<String, StoreError> {
    let n: i64 = one(tx, "SELECT COUNT(*) FROM workers", [], |r| r.get(0))?;
    let id = format!(
        "{}-{}",
        host.chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect::<String>(),
        n + 1
    );
    exec(
        tx,
        "INSERT INTO workers (id, host, device, slots, registered_ms, last_seen_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
        params![id, host, device, slots, now],
    )?;
    Ok(id)
}

fn touch_worker(tx: &Transaction<'_>, worker: &str, now: Millis) -> Result<(), StoreError> {
    let n = exec(
        tx,
        "UPDATE workers SET last_seen_ms = ?2 WHERE id = ?1",
        params![worker, now],
    )?;
    if n == 0 {
        return Err(StoreError::NotFound(format!(
            "worker {worker:?} (register again)"
        )));
    }
    Ok(())
}

/// Returns expired leases' jobs to the queue (or fails them on their last attempt). Returns how many.
pub fn expire_leases(tx: &Transaction<'_>, now: Millis) -> Result<usize, StoreError> {
    let expired: Vec<(String, String, String, u32, u32)> = tx
        .prepare_cached("SELECT id, lease_id, worker_id, attempts, max_attempts FROM jobs WHERE state = 'leased' AND lease_expires_ms < ?1")?
        .query_map([now], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?
        .collect::<Result<_, _>>()?;
    for (job, lease, worker, attempts, max) in &expired {
        let why = format!(
            "lease {lease} expired: worker {worker} stopped reporting (attempt {attempts} of {max})"
        );
        end_attempt(tx, job, lease, "expired", Some(&why), *attempts < *max, now)?;
    }
    Ok(expired.len())
}

/// Ends the current attempt; the job goes back to the queue if `retry`, else it fails with `error`.
fn end_attempt(
    tx: &Transaction<'_>,
    job: &str,
    lease: &str,
    outcome: &str,
    error: Option<&str>,
    retry: bool,
    now: Millis,
) -> Result<(), StoreError> {
    exec(
        tx,
        "UPDATE attempts SET ended_ms = ?2, outcome = ?3, error = ?4 WHERE lease_id = ?1",
        params![lease, now, outcome, error],
    )?;
    if retry {
        let seq = next_seq(tx)?;
        exec(
            tx,
            "UPDATE jobs SET state = 'queued', queued_seq = ?2, lease_id = NULL, worker_id = NULL, lease_expires_ms = NULL, updated_ms = ?3 WHERE id = ?1",
            params![job, seq, now],
        )?;
    } else {
        exec(
            tx,
            "UPDATE jobs SET state = 'failed', error = ?2, lease_id = NULL, worker_id = NULL, lease_expires_ms = NULL, updated_ms = ?3 WHERE id = ?1",
            params![job, error, now],
        )?;
    }
    Ok(())
}

/// Leases up to `max` queued jobs to `worker`, oldest first, after expiring overdue leases.
pub fn lease_jobs(
    tx: &Transaction<'_>,
    worker: &str,
    max: u32,
    now: Millis,
) -> Result<Vec<LeaseGrant>, StoreError> {
    touch_worker(tx, worker, now)?;
    expire_leases(tx, now)?;
    // One statement takes the oldest queued job and returns it, already leased.
    let mut take = tx.prepare_cached(concat!(
        "UPDATE jobs SET state = 'leased', attempts = attempts + 1, lease_id = printf('%012d.%s.%d', queued_seq, id, attempts + 1), worker_id = ?1,
             lease_expires_ms = ?2 + lease_ttl_ms, epochs_done = 0, latest_json = NULL, updated_ms = ?2
         WHERE id = (SELECT id FROM jobs WHERE state = 'queued' ORDER BY queued_seq LIMIT 1)
         RETURNING ",
        job_columns!()
    ))?;
    let mut grants = Vec::new();
    while grants.len() < max as usize {
        let Some(job) = take
            .query_row(params![worker, now], job_from_row)
            .optional()?
        else {
            break;
        };
        let job = job?;
        let JobState::Leased {
            lease, expires_at, ..
        } = &job.state
        else {
            return Err(corrupt("lease", format!("job {} was not leased", job.id)));
        };
        let (lease_id, expires_at) = (lease.clone(), *expires_at);
        exec(
            tx,
            "INSERT INTO attempts (lease_id, job_id, attempt, worker_id, started_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![lease_id, job.id, job.attempts, worker, now],
        )?;
        grants.push(LeaseGrant {
            lease_id,
            attempt: job.attempts,
            expires_at,
            job,
        });
    }
    Ok(grants)
}

/// The job a current lease holds: what the lifecycle rules need of it.
#[derive(Debug, Clone, PartialEq)]
struct Held {
    job_id: String,
    lease_id: String,
    attempts: u32,
    max_attempts: u32,
}

/// The job of `lease_id` if that lease is current; expires it first if it is overdue.
fn current(tx: &Transaction<'_>, lease_id: &str, now: Millis) -> Result<Held, StoreError> {
    let job_id = job_of_lease(lease_id);
    let stale = |reason: String| StoreError::StaleLease {
        lease_id: lease_id.to_string(),
        reason,
    };
    // (state, lease, expiry) and the attempt counts: the five columns the rules need.
    type LeaseRow = ((String, Option<String>, Option<Millis>), (u32, u32));
    let row: Option<LeaseRow> = tx
        .prepare_cached(
            "SELECT state, lease_id, lease_expires_ms, attempts, max_attempts FROM jobs WHERE id = ?1",
        )?
        .query_row([job_id], |r| {
            Ok(((r.get(0)?, r.get(1)?, r.get(2)?), (r.get(3)?, r.get(4)?)))
        })
        .optional()?;
    let Some(((state, lease, expires_at), (attempts, max_attempts))) = row else {
        return Err(stale("no such job".into()));
    };
    match (state.as_str(), lease, expires_at) {
        ("leased", Some(lease), Some(expires_at)) if lease == lease_id => {
            if expires_at < now {
                expire_leases(tx, now)?;
                return Err(stale(format!("it expired at {expires_at} (now {now})")));
            }
            Ok(Held {
                job_id: job_id.to_string(),
                lease_id: lease,
                attempts,
                max_attempts,
            })
        }
        ("leased", Some(lease), _) => Err(stale(format!("the job was leased again as {lease}"))),
        (state, _, _) => Err(stale(format!("the job is {state}"))),
    }
}

/// True when every sweep containing the job has been cancelled.
fn cancelled_everywhere(tx: &Transaction<'_>, job_id: &str) -> Result<bool, StoreError> {
    Ok(one(tx,
        "SELECT MIN(w.cancel_requested) FROM sweep_jobs s JOIN sweeps w ON w.id = s.sweep_id WHERE s.job_id = ?1",
        [job_id],
        |r| r.get::<_, Option<bool>>(0),
    )?
    .unwrap_or(false))
}

/// Cancels a job; ends its attempt first if `lease` holds it.
fn cancel_job(
    tx: &Transaction<'_>,
    job_id: &str,
    lease: Option<&str>,
    now: Millis,
) -> Result<(), StoreError> {
    if let Some(lease) = lease {
        exec(
            tx,
            "UPDATE attempts SET ended_ms = ?2, outcome = 'cancelled' WHERE lease_id = ?1",
            params![lease, now],
        )?;
    }
    exec(
        tx,
        "UPDATE jobs SET state = 'cancelled', error = 'sweep cancelled', lease_id = NULL, worker_id = NULL, lease_expires_ms = NULL, updated_ms = ?2 WHERE id = ?1",
        params![job_id, now],
    )?;
    Ok(())
}

/// Extends the worker's current leases; returns the named leases that are not current (stop those).
pub fn heartbeat(
    tx: &Transaction<'_>,
    worker: &str,
    lease_ids: &[String],
    now: Millis,
) -> Result<Vec<String>, StoreError> {
    touch_worker(tx, worker, now)?;
    let mut stale = Vec::new();
    for lease in lease_ids {
        match current(tx, lease, now) {
            Ok(held) if cancelled_everywhere(tx, &held.job_id)? => {
                cancel_job(tx, &held.job_id, Some(&held.lease_id), now)?;
                stale.push(lease.clone());
            }
            Ok(held) => {
                exec(
                    tx,
                    "UPDATE jobs SET lease_expires_ms = ?2 + lease_ttl_ms WHERE id = ?1",
                    params![held.job_id, now],
                )?;
            }
            Err(StoreError::StaleLease { .. }) => stale.push(lease.clone()),
            Err(e) => return Err(e),
        }
    }
    Ok(stale)
}

/// What a worker learns from an epoch report.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportAck {
    /// The job's sweeps were cancelled: stop.
    pub cancel: bool,
    pub expires_at: Millis,
}

/// Stores epochs' metrics under the current lease and extends it; if every sweep of the job was
/// cancelled, cancels the job instead (storing nothing) and says so. Errors: StaleLease.
pub fn report_epoch(
    tx: &Transaction<'_>,
    lease_id: &str,
    epochs: &[EpochReport],
    now: Millis,
) -> Result<ReportAck, StoreError> {
    let held = current(tx, lease_id, now)?;
    if cancelled_everywhere(tx, &held.job_id)? {
        cancel_job(tx, &held.job_id, Some(lease_id), now)?;
        return Ok(ReportAck {
            cancel: true,
            expires_at: now,
        });
    }
    // Without epochs (none is refused on the wire, but the rule holds) only the lease is extended.
    let (epoch, json) = store_epochs(tx, lease_id, epochs)?.unzip();
    let expires_at: Millis = one(
        tx,
        "UPDATE jobs SET epochs_done = COALESCE(?2, epochs_done), latest_json = COALESCE(?3, latest_json),
             lease_expires_ms = ?4 + lease_ttl_ms, updated_ms = ?4 WHERE id = ?1 RETURNING lease_expires_ms",
        params![held.job_id, epoch, json, now],
        |r| r.get(0),
    )?;
    Ok(ReportAck {
        cancel: false,
        expires_at,
    })
}

/// Writes epochs of a current lease; returns the last one (number and JSON) for the job's row.
fn store_epochs(
    tx: &Transaction<'_>,
    lease_id: &str,
    epochs: &[EpochReport],
) -> Result<Option<(u32, String)>, StoreError> {
    let mut latest = None;
    for metrics in epochs {
        let json = serde_json::to_string(metrics).expect("metrics serialise");
        exec(
            tx,
            "INSERT OR REPLACE INTO epochs (lease_id, epoch, metrics_json) VALUES (?1, ?2, ?3)",
            params![lease_id, metrics.epoch, json],
        )?;
        latest = Some((metrics.epoch, json));
    }
    Ok(latest)
}

/// Stores the result (after `epochs` not reported yet) under the current lease. Repeating it with
/// the same lease changes nothing. A result that arrives is kept even if the sweep was cancelled
/// meanwhile: the work is done and the number is real.
pub fn complete(
    tx: &Transaction<'_>,
    lease_id: &str,
    epochs: &[EpochReport],
    result: &TrialResult,
    now: Millis,
) -> Result<(), StoreError> {
    let held = match current(tx, lease_id, now) {
        Ok(held) => held,
        Err(stale @ StoreError::StaleLease { .. }) => {
            // Harmless if this very lease already completed the job.
            let outcome: Option<Option<String>> = tx
                .prepare_cached("SELECT outcome FROM attempts WHERE lease_id = ?1")?
                .query_row([lease_id], |r| r.get(0))
                .optional()?;
            return match outcome.flatten().as_deref() {
                Some("done") => Ok(()),
                _ => Err(stale),
            };
        }
        Err(e) => return Err(e),
    };
    let latest = store_epochs(tx, lease_id, epochs)?;
    exec(
        tx,
        "UPDATE attempts SET ended_ms = ?2, outcome = 'done' WHERE lease_id = ?1",
        params![lease_id, now],
    )?;
    let (epoch, json) = latest.unzip();
    exec(
        tx,
        "UPDATE jobs SET state = 'done', result_json = ?2, epochs_done = COALESCE(?4, epochs_done), latest_json = COALESCE(?5, latest_json),
             lease_id = NULL, worker_id = NULL, lease_expires_ms = NULL, updated_ms = ?3 WHERE id = ?1",
        params![
            held.job_id,
            serde_json::to_string(result).expect("result serialises"),
            now,
            epoch,
            json
        ],
    )?;
    Ok(())
}

/// Ends the current attempt with an error; returns true if the job was queued again.
pub fn fail(
    tx: &Transaction<'_>,
    lease_id: &str,
    error: &str,
    now: Millis,
) -> Result<bool, StoreError> {
    let held = current(tx, lease_id, now)?;
    let retry = held.attempts < held.max_attempts;
    let why = format!(
        "attempt {} of {}: {error}",
        held.attempts, held.max_attempts
    );
    end_attempt(tx, &held.job_id, lease_id, "failed", Some(&why), retry, now)?;
    Ok(retry)
}

/// Cancels a sweep: its queued jobs now (unless another live sweep shares them), its leased ones at
/// their worker's next report or heartbeat.
pub fn cancel_sweep(
    tx: &Transaction<'_>,
    sweep_id: &str,
    now: Millis,
) -> Result<SweepCounts, StoreError> {
    sweep_counts(tx, sweep_id)?;
    exec(
        tx,
        "UPDATE sweeps SET cancel_requested = 1 WHERE id = ?1",
        [sweep_id],
    )?;
    let queued: Vec<String> = tx
        .prepare("SELECT j.id FROM sweep_jobs s JOIN jobs j ON j.id = s.job_id WHERE s.sweep_id = ?1 AND j.state = 'queued'")?
        .query_map([sweep_id], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for id in queued {
        if cancelled_everywhere(tx, &id)? {
            cancel_job(tx, &id, None, now)?;
        }
    }
    sweep_counts(tx, sweep_id)
}

/// The reference of a dataset some sweep uses, by its content hash. Errors: NotFound.
pub fn dataset_by_sha(tx: &Transaction<'_>, sha256: &str) -> Result<DatasetRef, StoreError> {
    tx.prepare_cached("SELECT dataset_spec, dataset_bytes, synthetic, validation FROM sweeps WHERE dataset_sha256 = ?1 LIMIT 1")?
        .query_row([sha256], |r| {
            Ok(DatasetRef { spec: r.get(0)?, sha256: sha256.to_string(), bytes: r.get::<_, i64>(1)? as u64, synthetic: r.get(2)?, validation: r.get(3)? })
        })
        .optional()?
        .ok_or_else(|| StoreError::NotFound(format!("dataset {sha256}")))
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

/// Workers, most recently seen first, with the leases each holds.
pub fn list_workers(tx: &Transaction<'_>) -> Result<Vec<(WorkerRecord, Vec<String>)>, StoreError> {
    let workers: Vec<WorkerRecord> = tx
        .prepare(
            "SELECT id, host, device, slots, last_seen_ms FROM workers ORDER BY last_seen_ms DESC",
        )?
        .query_map([], |r| {
            Ok(WorkerRecord {
                id: r.get(0)?,
                host: r.get(1)?,
                device: r.get(2)?,
                slots: r.get(3)?,
                last_seen_ms: r.get(4)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    let mut held =
        tx.prepare_cached("SELECT id FROM jobs WHERE state = 'leased' AND worker_id = ?1")?;
    workers
        .into_iter()
        .map(|w| {
            let jobs = held
                .query_map([&w.id], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            Ok((w, jobs))
        })
        .collect()
}

/// A registered worker.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerRecord {
    pub id: String,
    pub host: String,
    pub device: String,
    pub slots: u32,
    pub last_seen_ms: Millis,
}

/// Per-epoch metrics stored for a lease, in epoch order.
pub fn epochs_of(tx: &Transaction<'_>, lease_id: &str) -> Result<Vec<EpochReport>, StoreError> {
    tx.prepare_cached("SELECT metrics_json FROM epochs WHERE lease_id = ?1 ORDER BY epoch")?
        .query_map([lease_id], |r| r.get::<_, String>(0))?
        .map(|j| serde_json::from_str(&j?).map_err(|e| corrupt("epoch", e)))
        .collect()
}

#[cfg(test)]
mod tests;
