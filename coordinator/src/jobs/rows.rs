//! Reading a job row back: its columns, and the decoding of its state (by the one mapping in
//! [`JobStatus`]; a name that is not a state is corruption, never a default).

use std::str::FromStr;

use jetsweep_proto::state::JobStatus;

use super::{Job, JobState};
use crate::Error;
use crate::sweep::Trial;

/// A job's columns, in the order [`job_from_row`] reads them (no name clashes with `sweep_jobs`).
/// A macro so that the statements using it are `concat!`ed at compile time, not built (and
/// hashed for the statement cache) anew on every call.
macro_rules! job_columns {
    () => {
        "id, model, optimizer, batch_size, max_epochs, learning_rate, seed, dataset_sha256, state, \
         attempts, max_attempts, epochs_done, latest_json, lease_id, worker_id, lease_expires_ms, result_json, error, last_sweep, summary_json, weight_decay"
    };
}
pub(super) use job_columns;

/// A job's state as one of its sweeps sees it (`s` its `sweep_jobs` row, `j` the job): the job's
/// own state, unless that sweep cancelled it — then `cancelled`, except while the lease that was
/// running at the cancel still runs (`leased`: it stops at its next report) or if that lease
/// finished the job (`done`: a result that arrives is kept). So a cancelled sweep stays cancelled
/// whatever a later sweep does with the same jobs. A job of a point the sweep stopped early
/// (`stopped_epoch`) that is still queued (for another sweep) or paused is `cancelled` here.
macro_rules! state_in_sweep {
    () => {
        "(CASE WHEN s.stopped_epoch IS NOT NULL AND j.state IN ('queued', 'paused') THEN 'cancelled' \
          WHEN s.cancelled_ms IS NULL THEN j.state \
          WHEN j.state = 'leased' AND j.lease_id = s.cancelled_lease THEN 'leased' \
          WHEN j.state = 'done' AND EXISTS (SELECT 1 FROM attempts c \
               WHERE c.lease_id = s.cancelled_lease AND c.outcome = 'done') THEN 'done' \
          ELSE 'cancelled' END)"
    };
}
pub(super) use state_in_sweep;

pub(super) fn corrupt(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Corrupt(format!("{what}: {e}"))
}

/// A value of a stored row, parsed; a value that does not parse is corruption.
fn parsed<T: FromStr>(what: &str, text: &str) -> Result<T, Error>
where
    T::Err: std::fmt::Display,
{
    text.parse().map_err(|e| corrupt(what, e))
}

/// The row's columns (SQL errors) and then its meaning (corruption errors), kept apart so a
/// statement's `query_map` can carry both.
pub(super) fn job_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Job, Error>> {
    let id: String = r.get(0)?;
    let model: String = r.get(1)?;
    let optimizer: String = r.get(2)?;
    let state: String = r.get(8)?;
    let latest: Option<String> = r.get(12)?;
    let result: Option<String> = r.get(16)?;
    let error: Option<String> = r.get(17)?;
    let sweep_id: Option<String> = r.get(18)?;
    let summary: Option<String> = r.get(19)?;
    let leased = (
        r.get::<_, Option<String>>(13)?,
        r.get::<_, Option<String>>(14)?,
        r.get::<_, Option<i64>>(15)?,
    );
    let (batch_size, max_epochs, learning_rate, seed, weight_decay) = (
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get::<_, i64>(6)?,
        r.get(20)?,
    );
    let (dataset_sha256, attempts, max_attempts, epochs_done) =
        (r.get(7)?, r.get(9)?, r.get(10)?, r.get(11)?);
    Ok((|| {
        let what = |field: &str| format!("job {id} {field}");
        let state = match parsed::<JobStatus>(&what("state"), &state)? {
            JobStatus::Queued => JobState::Queued,
            JobStatus::Leased => match leased {
                (Some(lease), Some(worker), Some(expires_at)) => JobState::Leased {
                    lease,
                    worker,
                    expires_at,
                },
                _ => {
                    return Err(corrupt(
                        &what("lease"),
                        "leased without a lease, worker or expiry",
                    ));
                }
            },
            JobStatus::Done => JobState::Done {
                result: serde_json::from_str(result.as_deref().unwrap_or(""))
                    .map_err(|e| corrupt(&what("result"), e))?,
                summary: summary
                    .map(|s| serde_json::from_str(&s))
                    .transpose()
                    .map_err(|e| corrupt(&what("summary"), e))?,
            },
            JobStatus::Failed => JobState::Failed {
                error: error.unwrap_or_default(),
            },
            JobStatus::Cancelled => JobState::Cancelled {
                reason: error.unwrap_or_default(),
            },
            JobStatus::Paused => JobState::Paused {
                reason: error.unwrap_or_default(),
            },
        };
        Ok(Job {
            trial: Trial {
                model: parsed(&what("model"), &model)?,
                optimizer: parsed(&what("optimizer"), &optimizer)?,
                batch_size,
                max_epochs,
                learning_rate,
                seed: seed as u64,
                weight_decay,
            },
            dataset_sha256,
            state,
            attempts,
            max_attempts,
            epochs_done,
            latest: latest
                .map(|l| serde_json::from_str(&l))
                .transpose()
                .map_err(|e| corrupt(&what("epoch"), e))?,
            sweep_id,
            last_worker: None,
            id,
        })
    })())
}
