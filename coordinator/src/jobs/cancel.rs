//! Cancelling: a sweep's queued (and paused) jobs at once, its leased ones at their worker's next report. A job
//! shared with a sweep that is not cancelled keeps running for that one.

use rusqlite::{Transaction, params};

use super::{Millis, SweepCounts, sweep_counts};
use crate::Error;
use crate::store::{exec, one};

/// True when no sweep containing the job wants it any more: each was cancelled or stopped the
/// job's point early.
pub(super) fn cancelled_everywhere(tx: &Transaction<'_>, job_id: &str) -> Result<bool, Error> {
    Ok(one(tx,
        "SELECT MIN(w.cancel_requested OR s.stopped_epoch IS NOT NULL) FROM sweep_jobs s JOIN sweeps w ON w.id = s.sweep_id WHERE s.job_id = ?1",
        [job_id],
        |r| r.get::<_, Option<bool>>(0),
    )?
    .unwrap_or(false))
}

/// Cancels a job (its reason: stopped early, if a sweep stopped it, else cancelled); ends its
/// attempt first if `lease` holds it.
pub(super) fn cancel_job(
    tx: &Transaction<'_>,
    job_id: &str,
    lease: Option<&str>,
    now: Millis,
) -> Result<(), Error> {
    if let Some(lease) = lease {
        exec(
            tx,
            "UPDATE attempts SET ended_ms = ?2, outcome = 'cancelled' WHERE lease_id = ?1",
            params![lease, now],
        )?;
    }
    exec(
        tx,
        "UPDATE jobs SET state = 'cancelled', lease_id = NULL,
             error = COALESCE((SELECT 'stopped early at epoch ' || MIN(s.stopped_epoch)
                                      || IIF(json_extract(w.stop_json, '$.rule') = 'median', ' by the median rule', ' by successive halving')
                               FROM sweep_jobs s JOIN sweeps w ON w.id = s.sweep_id
                               WHERE s.job_id = ?1 AND s.stopped_epoch IS NOT NULL), 'sweep cancelled'), worker_id = NULL, lease_expires_ms = NULL, counted = 0, updated_ms = ?2 WHERE id = ?1",
        params![job_id, now],
    )?;
    Ok(())
}

/// Cancels a sweep: its queued jobs now (unless another live sweep shares them), its leased ones at
/// their worker's next report or heartbeat. The sweep records which of its jobs it cancelled, so it
/// stays cancelled whatever a later sweep does with them ([`super::rows::state_in_sweep`]). A sweep
/// with nothing left to run is refused ([`Error::SweepFinished`]) and nothing changes.
pub fn cancel_sweep(
    tx: &Transaction<'_>,
    sweep_id: &str,
    now: Millis,
) -> Result<SweepCounts, Error> {
    let before = sweep_counts(tx, sweep_id)?;
    if before.queued == 0 && before.leased == 0 && before.paused == 0 {
        return Err(Error::SweepFinished {
            sweep_id: sweep_id.to_string(),
            done: before.done,
            failed: before.failed,
            cancelled: before.cancelled,
        });
    }
    exec(
        tx,
        "UPDATE sweeps SET cancel_requested = 1 WHERE id = ?1",
        [sweep_id],
    )?;
    // Its unfinished jobs, each with the lease running it now (which may still finish it).
    exec(
        tx,
        "UPDATE sweep_jobs SET cancelled_ms = ?2,
                cancelled_lease = (SELECT j.lease_id FROM jobs j WHERE j.id = sweep_jobs.job_id AND j.state = 'leased')
         WHERE sweep_id = ?1 AND cancelled_ms IS NULL
           AND job_id IN (SELECT id FROM jobs WHERE state IN ('queued', 'leased', 'paused'))",
        params![sweep_id, now],
    )?;
    let queued: Vec<String> = tx
        .prepare("SELECT j.id FROM sweep_jobs s JOIN jobs j ON j.id = s.job_id WHERE s.sweep_id = ?1 AND j.state IN ('queued', 'paused')")?
        .query_map([sweep_id], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for id in queued {
        if cancelled_everywhere(tx, &id)? {
            cancel_job(tx, &id, None, now)?;
        }
    }
    sweep_counts(tx, sweep_id)
}

/// After a cancel: how many of the sweep's running jobs will stop, and how many of its unfinished
/// jobs go on because another sweep that is not cancelled holds them too.
pub fn cancel_effect(tx: &Transaction<'_>, sweep_id: &str) -> Result<(u32, u32), Error> {
    let rows: Vec<(String, bool)> = tx
        .prepare(
            "SELECT j.state, MIN(w.cancel_requested) FROM sweep_jobs s
               JOIN jobs j ON j.id = s.job_id
               JOIN sweep_jobs o ON o.job_id = j.id
               JOIN sweeps w ON w.id = o.sweep_id
             WHERE s.sweep_id = ?1 AND (j.state = 'queued' OR j.state = 'leased')
             GROUP BY j.id",
        )?
        .query_map([sweep_id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let (mut stopping, mut kept) = (0, 0);
    for (state, cancelled_everywhere) in rows {
        match (cancelled_everywhere, state.as_str()) {
            (false, _) => kept += 1,
            (true, "leased") => stopping += 1,
            (true, _) => {}
        }
    }
    Ok((stopping, kept))
}
