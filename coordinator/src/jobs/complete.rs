//! What a worker says about a job it holds: epoch reports, completion, failure. Each goes through
//! the fencing check first; a late word from a lease that is no longer current changes nothing.

use rusqlite::{OptionalExtension, Transaction, params};

use super::Millis;
use super::cancel::{cancel_job, cancelled_everywhere};
use super::checkpoints::{self, Checkpoint};
use super::lease::{Held, current, end_attempt, lose_worker};
use super::{arrivals, halving};
use crate::Error;
use crate::store::{exec, one};
use jetsweep_proto::metrics::{EpochMetrics, EpochSummary, TrialResult};
use jetsweep_proto::worker_id::worker_name;

/// What a worker learns from an epoch report.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportAck {
    /// The job's sweeps were cancelled: stop.
    pub cancel: bool,
    pub expires_at: Millis,
}

/// Stores epochs' metrics (and the trial's state after the last of them, if sent) under the
/// current lease and extends it; if every sweep of the job was cancelled, cancels the job instead
/// (storing nothing) and says so. Errors: StaleLease.
pub fn report_epoch(
    tx: &Transaction<'_>,
    lease_id: &str,
    worker: &str,
    epochs: &[EpochMetrics],
    checkpoint: Option<&Checkpoint>,
    now: Millis,
) -> Result<ReportAck, Error> {
    let held = current(tx, lease_id, worker, now)?;
    if cancelled_everywhere(tx, &held.job_id)? {
        cancel_job(tx, &held.job_id, Some(lease_id), now)?;
        halving::after_end(tx, &held.job_id, now)?;
        return Ok(ReportAck {
            cancel: true,
            expires_at: now,
        });
    }
    // Without epochs (none is refused on the wire, but the rule holds) only the lease is extended.
    let (epoch, json) = store_epochs(tx, &held, epochs)?.unzip();
    if let Some(checkpoint) = checkpoint {
        checkpoints::save(tx, &held, epoch, checkpoint)?;
    }
    let judged = halving::after_report(tx, &held.job_id, held.max_epochs, epochs, now)?;
    if judged.decided || judged.stopped {
        // This report completed a rung (or an arrival) that may have stopped the job's own point.
        let stopped = cancelled_everywhere(tx, &held.job_id)?;
        if stopped {
            cancel_job(tx, &held.job_id, Some(lease_id), now)?;
        }
        // Stopped points settle: a TPE sweep suggests the next ones.
        halving::after_end(tx, &held.job_id, now)?;
        if stopped {
            return Ok(ReportAck {
                cancel: true,
                expires_at: now,
            });
        }
    }
    if let Some((sweep_id, rung)) = judged.pause
        && arrivals::pause(tx, &held, &sweep_id, rung, now)?
    {
        // Its lane leaves the pack; the sweep may have nothing else left to run.
        halving::after_end(tx, &held.job_id, now)?;
        return Ok(ReportAck {
            cancel: true,
            expires_at: now,
        });
    }
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
/// Epochs past the trial's last, or more of them than it has, are refused (nothing is written).
fn store_epochs(
    tx: &Transaction<'_>,
    held: &Held,
    epochs: &[EpochMetrics],
) -> Result<Option<(u32, String)>, Error> {
    let lease_id = &held.lease_id;
    if epochs.len() > held.max_epochs as usize {
        return Err(Error::InvalidRequest(format!(
            "{} epochs in one report: the trial has {}",
            epochs.len(),
            held.max_epochs
        )));
    }
    if let Some(past) = epochs.iter().find(|m| m.epoch > held.max_epochs) {
        return Err(Error::InvalidRequest(format!(
            "epoch {} reported: the trial has {} epochs",
            past.epoch, held.max_epochs
        )));
    }
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

/// Every epoch a job reported, each as its latest attempt reported it (a resumed attempt carries
/// on from the one before), in epoch order.
fn job_epochs(tx: &Transaction<'_>, job_id: &str) -> Result<Vec<EpochMetrics>, Error> {
    let mut stmt = tx.prepare_cached(
        "SELECT e.epoch, e.metrics_json FROM attempts a JOIN epochs e ON e.lease_id = a.lease_id
         WHERE a.job_id = ?1 ORDER BY e.epoch, a.attempt DESC",
    )?;
    let mut rows = stmt.query([job_id])?;
    let mut epochs: Vec<EpochMetrics> = Vec::new();
    while let Some(r) = rows.next()? {
        let epoch: u32 = r.get(0)?;
        if epochs.last().is_some_and(|m| m.epoch == epoch) {
            continue;
        }
        let json: String = r.get(1)?;
        epochs.push(
            serde_json::from_str(&json)
                .map_err(|e| Error::Corrupt(format!("job {job_id} epoch {epoch}: {e}")))?,
        );
    }
    Ok(epochs)
}

/// The update that marks job `?1` done at `?3` with its result `?2`, summary `?6` and latest
/// epoch (`?4`, `?5`); the statements add whether it leaves the running count.
macro_rules! done_job {
    () => {
        "UPDATE jobs SET state = 'done', result_json = ?2, epochs_done = COALESCE(?4, epochs_done), latest_json = COALESCE(?5, latest_json),
             lease_id = NULL, worker_id = NULL, lease_expires_ms = NULL, updated_ms = ?3, summary_json = ?6"
    };
}

/// Stores the result (after `epochs` not reported yet) under the current lease. Repeating it with
/// the same lease changes nothing. A result that arrives is kept even if the sweep was cancelled
/// meanwhile: the work is done and the number is real.
pub fn complete(
    tx: &Transaction<'_>,
    lease_id: &str,
    worker: &str,
    epochs: &[EpochMetrics],
    result: &TrialResult,
    now: Millis,
) -> Result<(), Error> {
    let held = match current(tx, lease_id, worker, now) {
        Ok(held) => held,
        Err(stale @ Error::StaleLease { .. }) => {
            // Harmless if this very lease, held by this worker, already completed the job.
            let attempt: Option<(Option<String>, String)> = tx
                .prepare_cached("SELECT outcome, worker_id FROM attempts WHERE lease_id = ?1")?
                .query_row([lease_id], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            return match attempt {
                Some((Some(outcome), holder)) if outcome == "done" && holder == worker => Ok(()),
                Some((Some(outcome), _)) if outcome == "done" => Err(Error::NotYourLease {
                    lease_id: lease_id.to_string(),
                }),
                _ => Err(stale),
            };
        }
        Err(e) => return Err(e),
    };
    let latest = store_epochs(tx, &held, epochs)?;
    exec(
        tx,
        "UPDATE attempts SET ended_ms = ?2, outcome = 'done' WHERE lease_id = ?1",
        params![lease_id, now],
    )?;
    let (epoch, json) = latest.unzip();
    // A one-epoch trial never has saved state (state is saved before the last epoch only): the
    // lookup is skipped for the smallest, most numerous jobs.
    if held.max_epochs > 1 {
        checkpoints::discard(tx, &held.job_id)?;
    }
    let summary = EpochSummary::of(&job_epochs(tx, &held.job_id)?, result.best_epoch)
        .map(|s| serde_json::to_string(&s).expect("summary serialises"));
    // A counted job leaves its sweep's running count by clearing its mark (migration 27's
    // trigger); an uncounted one's update names no column a trigger watches.
    let done = [
        concat!(done_job!(), " WHERE id = ?1"),
        concat!(done_job!(), ", counted = 0 WHERE id = ?1"),
    ][usize::from(held.counted)];
    exec(
        tx,
        done,
        params![
            held.job_id,
            serde_json::to_string(result).expect("result serialises"),
            now,
            epoch,
            json,
            summary
        ],
    )?;
    // A completion may carry the epoch that completes a rung; an ASHA sweep may now have
    // nothing left to run but paused points.
    halving::after_report(tx, &held.job_id, held.max_epochs, epochs, now)?;
    halving::after_end(tx, &held.job_id, now)?;
    Ok(())
}

/// Ends the current attempt with an error; returns true if the job was queued again. With
/// `retryable` false (the failure would repeat: the trial diverged) the job fails now.
pub fn fail(
    tx: &Transaction<'_>,
    lease_id: &str,
    worker: &str,
    error: &str,
    retryable: bool,
    now: Millis,
) -> Result<bool, Error> {
    let held = current(tx, lease_id, worker, now)?;
    let retry = retryable && held.failures < held.max_attempts;
    let why = format!(
        "attempt {} of {}: {error}",
        held.failures, held.max_attempts
    );
    end_attempt(tx, &held.job_id, lease_id, "failed", Some(&why), retry, now)?;
    if !retry {
        // A seed that failed for good leaves its point's mean: a rung may be complete without it.
        halving::after_failure(tx, &held.job_id, held.max_epochs, now)?;
    }
    Ok(retry)
}

/// The worker hands the job back (it is stopping): the job goes back to the queue, counted as a
/// lost worker, not as a failure of its own. Returns true if it was queued again.
pub fn release(
    tx: &Transaction<'_>,
    lease_id: &str,
    worker: &str,
    why: &str,
    now: Millis,
) -> Result<bool, Error> {
    let held = current(tx, lease_id, worker, now)?;
    let why = format!("worker {} handed it back: {why}", worker_name(worker));
    lose_worker(
        tx,
        &held.job_id,
        lease_id,
        held.lost,
        held.max_lost,
        &why,
        "released",
        now,
    )
}
