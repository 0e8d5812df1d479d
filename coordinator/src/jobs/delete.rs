//! Deleting a sweep (`jetsweep delete ID`): the sweep and everything only it holds — its jobs that
//! no other sweep holds, with their attempts, epoch reports, saved state and kept weights, and its
//! decisions, arrivals, suggested points and share — in one transaction. Jobs other sweeps hold
//! stay, results and all; the audit log keeps the sweep's rows and gains one for the delete. A
//! sweep with work left (queued, running or paused) is refused: cancel it first.

use rusqlite::Transaction;

use super::Millis;
use crate::Error;
use crate::credentials::Caller;

/// What a delete removed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Deleted {
    /// Jobs removed (only this sweep held them), and jobs kept (other sweeps hold them).
    pub jobs: u32,
    pub shared: u32,
    /// Epoch reports and kept weights removed.
    pub epochs: u32,
    pub models: u32,
    /// The sweep's dataset when no other sweep names it (its prepared file may go).
    pub unused_dataset: Option<String>,
    /// Store pages freed (reused by later writes; the file keeps its size), in bytes.
    pub freed_bytes: u64,
}

/// Deletes `sweep_id` for `caller` (a user: only its own). NOT_FOUND, PERMISSION_DENIED, or
/// FAILED_PRECONDITION for a sweep with work left; nothing is changed on an error.
pub fn delete_sweep(
    tx: &Transaction<'_>,
    caller: &Caller,
    sweep_id: &str,
    now: Millis,
) -> Result<Deleted, Error> {
    super::audit::check_may_cancel(tx, caller, sweep_id)?;
    let counts = super::sweep_counts(tx, sweep_id)?;
    let open = counts.queued + counts.leased + counts.paused;
    if open > 0 {
        return Err(Error::SweepOpen {
            sweep_id: sweep_id.to_string(),
            open,
        });
    }
    let free_before = free_bytes(tx)?;
    tx.execute_batch(
        "CREATE TEMP TABLE IF NOT EXISTS doomed_jobs (id TEXT PRIMARY KEY) WITHOUT ROWID;
         DELETE FROM temp.doomed_jobs;",
    )?;
    tx.execute(
        "INSERT INTO temp.doomed_jobs (id)
         SELECT s.job_id FROM sweep_jobs s WHERE s.sweep_id = ?1
           AND NOT EXISTS (SELECT 1 FROM sweep_jobs o WHERE o.job_id = s.job_id AND o.sweep_id <> ?1)",
        [sweep_id],
    )?;
    let jobs: u32 = tx.query_row("SELECT COUNT(*) FROM temp.doomed_jobs", [], |r| r.get(0))?;
    let held: u32 = tx.query_row(
        "SELECT COUNT(*) FROM sweep_jobs WHERE sweep_id = ?1",
        [sweep_id],
        |r| r.get(0),
    )?;
    let epochs = tx.execute(
        "DELETE FROM epochs WHERE lease_id IN
           (SELECT a.lease_id FROM attempts a JOIN temp.doomed_jobs d ON d.id = a.job_id)",
        [],
    )? as u32;
    tx.execute(
        "DELETE FROM attempts WHERE job_id IN (SELECT id FROM temp.doomed_jobs)",
        [],
    )?;
    tx.execute(
        "DELETE FROM checkpoints WHERE job_id IN (SELECT id FROM temp.doomed_jobs)",
        [],
    )?;
    let models = tx.execute(
        "DELETE FROM models WHERE job_id IN (SELECT id FROM temp.doomed_jobs)",
        [],
    )? as u32;
    tx.execute("DELETE FROM sweep_jobs WHERE sweep_id = ?1", [sweep_id])?;
    tx.execute(
        "DELETE FROM jobs WHERE id IN (SELECT id FROM temp.doomed_jobs)",
        [],
    )?;
    // A job another sweep holds belongs to one of them now.
    tx.execute(
        "UPDATE jobs SET last_sweep = (SELECT MAX(s.sweep_id) FROM sweep_jobs s WHERE s.job_id = jobs.id)
         WHERE last_sweep = ?1",
        [sweep_id],
    )?;
    for table in ["decisions", "arrivals", "suggested_points", "sweep_shares"] {
        tx.execute(
            &format!("DELETE FROM {table} WHERE sweep_id = ?1"),
            [sweep_id],
        )?;
    }
    let dataset: String = tx.query_row(
        "SELECT dataset_sha256 FROM sweeps WHERE id = ?1",
        [sweep_id],
        |r| r.get(0),
    )?;
    tx.execute("DELETE FROM sweeps WHERE id = ?1", [sweep_id])?;
    let still_used: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM sweeps WHERE dataset_sha256 = ?1)",
        [&dataset],
        |r| r.get(0),
    )?;
    tx.execute_batch("DELETE FROM temp.doomed_jobs;")?;
    let deleted = Deleted {
        jobs,
        shared: held - jobs,
        epochs,
        models,
        unused_dataset: (!still_used).then_some(dataset),
        freed_bytes: free_bytes(tx)?.saturating_sub(free_before),
    };
    let detail = format!(
        "{} jobs deleted ({} epoch reports, {} kept models); {} kept for other sweeps",
        deleted.jobs, deleted.epochs, deleted.models, deleted.shared
    );
    super::audit::record(tx, now, caller, "delete", sweep_id, &detail)?;
    Ok(deleted)
}

/// The store's free pages, in bytes.
fn free_bytes(tx: &Transaction<'_>) -> Result<u64, Error> {
    let pages: i64 = tx.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    let size: i64 = tx.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    Ok((pages * size) as u64)
}
