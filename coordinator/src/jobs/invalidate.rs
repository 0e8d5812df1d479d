//! Forgetting what a distrusted worker produced (`jetsweep invalidate --worker NAME`): every
//! epoch it reported is deleted and its attempts are marked `invalidated`; every job it touched
//! that is done, paused, queued or running is queued again from scratch (its saved state and kept
//! weights dropped, since a later attempt may have resumed from the worker's), so an honest worker trains it anew
//! and each sweep that holds it shows it queued until then. A failed or cancelled job keeps its
//! state. Decisions of early stopping already made stand: they are rows, not recomputed.

use rusqlite::{Transaction, params};

use super::Millis;
use super::lease::next_seq;
use crate::Error;

/// What an invalidation changed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Invalidated {
    /// Attempts the worker made (each now `invalidated`).
    pub attempts: u32,
    /// Epoch reports deleted.
    pub epochs: u32,
    /// Jobs queued again from scratch.
    pub requeued: u32,
    /// The sweeps that hold a requeued job, by id.
    pub sweeps: Vec<String>,
}

/// Whether `worker_id` (`NAME.SECRET`, or a bare `NAME` from before secrets) is the worker `name`,
/// as SQL over the attempts' `worker_id` column (`?1` = the name).
const IS_WORKER: &str = "(worker_id = ?1 OR substr(worker_id, 1, length(?1) + 1) = ?1 || '.')";

/// Invalidates everything the worker named `name` produced (see the module's doc). NOT_FOUND when
/// no attempt was ever made by it.
pub fn invalidate_worker(
    tx: &Transaction<'_>,
    name: &str,
    now: Millis,
) -> Result<Invalidated, Error> {
    let attempts: u32 = tx.query_row(
        &format!("SELECT COUNT(*) FROM attempts WHERE {IS_WORKER}"),
        [name],
        |r| r.get(0),
    )?;
    if attempts == 0 {
        return Err(Error::NotFound(format!(
            "worker {name:?}: it made no attempt here (`jetsweep workers` lists the names)"
        )));
    }
    let touched: Vec<(String, String, Option<String>)> = tx
        .prepare(&format!(
            "SELECT j.id, j.state, j.lease_id FROM jobs j
             WHERE j.id IN (SELECT job_id FROM attempts WHERE {IS_WORKER})
             ORDER BY j.queued_seq"
        ))?
        .query_map([name], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    let mut seq = next_seq(tx)?;
    let mut end_lease = tx.prepare_cached(
        "UPDATE attempts SET ended_ms = ?2, outcome = 'invalidated' WHERE lease_id = ?1 AND ended_ms IS NULL",
    )?;
    let mut requeue = tx.prepare_cached(
        "UPDATE jobs SET state = 'queued', queued_seq = ?2,
                max_attempts = attempts - lost + COALESCE((SELECT max_attempts FROM sweeps WHERE id = jobs.last_sweep), 3),
                max_lost = lost + ?3, lease_id = NULL, worker_id = NULL, lease_expires_ms = NULL, counted = 0,
                epochs_done = 0, latest_json = NULL, result_json = NULL, summary_json = NULL,
                error = NULL, updated_ms = ?4
         WHERE id = ?1",
    )?;
    let mut drop_state = tx.prepare_cached("DELETE FROM checkpoints WHERE job_id = ?1")?;
    let mut drop_models = tx.prepare_cached("DELETE FROM models WHERE job_id = ?1")?;
    let mut sweeps_of = tx.prepare_cached("SELECT sweep_id FROM sweep_jobs WHERE job_id = ?1")?;
    let mut sweeps = std::collections::BTreeSet::new();
    let mut requeued = 0;
    for (job, state, lease) in &touched {
        if !matches!(state.as_str(), "done" | "paused" | "queued" | "leased") {
            continue;
        }
        // A running attempt (whoever runs it, perhaps from the worker's saved state) ends here;
        // its worker's next report finds its lease gone and drops the job.
        if let Some(lease) = lease {
            end_lease.execute(params![lease, now])?;
        }
        requeue.execute(params![job, seq, super::MAX_LOST, now])?;
        seq += 1;
        drop_state.execute([job])?;
        drop_models.execute([job])?;
        for sweep in sweeps_of.query_map([job], |r| r.get::<_, String>(0))? {
            sweeps.insert(sweep?);
        }
        requeued += 1;
    }
    let epochs = tx.execute(
        &format!(
            "DELETE FROM epochs WHERE lease_id IN (SELECT lease_id FROM attempts WHERE {IS_WORKER})"
        ),
        [name],
    )? as u32;
    tx.execute(
        &format!(
            "UPDATE attempts SET outcome = 'invalidated', ended_ms = COALESCE(ended_ms, ?2) WHERE {IS_WORKER}"
        ),
        params![name, now],
    )?;
    Ok(Invalidated {
        attempts,
        epochs,
        requeued,
        sweeps: sweeps.into_iter().collect(),
    })
}
