//! Saved trial state: the newest checkpoint a job's worker sent with an epoch report, kept so a
//! later attempt (after the worker died or handed the job back) resumes from that epoch instead of
//! from the start. One row per job, replaced by each newer one, removed when the job ends.

use rusqlite::{OptionalExtension, Transaction, params};

use super::Millis;
use super::lease::{Held, current};
use crate::Error;
use crate::store::exec;
use jetsweep_proto::limits::MAX_CHECKPOINT_BYTES;

/// A trial's state after `epoch`, in the worker's encoding (opaque here).
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    pub epoch: u32,
    pub state: Vec<u8>,
}

impl Checkpoint {
    /// Refuses state no report may carry: empty, or over [`MAX_CHECKPOINT_BYTES`].
    pub fn check_size(&self) -> Result<(), Error> {
        if self.state.is_empty() || self.state.len() > MAX_CHECKPOINT_BYTES {
            return Err(Error::InvalidRequest(format!(
                "checkpoint.state of {} bytes: send 1 to {MAX_CHECKPOINT_BYTES} bytes, or no checkpoint",
                self.state.len()
            )));
        }
        Ok(())
    }
}

/// Keeps `checkpoint` for the held job, replacing an older one. It must be the state after the
/// last epoch of the report it came with (`last_reported`), and not after the trial's last epoch
/// (a finished trial completes instead).
pub(super) fn save(
    tx: &Transaction<'_>,
    held: &Held,
    last_reported: Option<u32>,
    checkpoint: &Checkpoint,
) -> Result<(), Error> {
    checkpoint.check_size()?;
    if last_reported != Some(checkpoint.epoch) || checkpoint.epoch >= held.max_epochs {
        return Err(Error::InvalidRequest(format!(
            "checkpoint.epoch {}: it must be the last epoch of its report ({}) and before the trial's last ({})",
            checkpoint.epoch,
            last_reported.map_or("none".to_string(), |e| e.to_string()),
            held.max_epochs
        )));
    }
    exec(
        tx,
        "INSERT OR REPLACE INTO checkpoints (job_id, lease_id, epoch, state) VALUES (?1, ?2, ?3, ?4)",
        params![
            held.job_id,
            held.lease_id,
            checkpoint.epoch,
            checkpoint.state
        ],
    )?;
    Ok(())
}

/// Where a job granted again resumes: the epoch of its checkpoint, if it has one. The job's row
/// then shows the epochs done and the latest metrics as of that epoch.
pub(super) fn resume_point(tx: &Transaction<'_>, job: &str) -> Result<Option<u32>, Error> {
    let found: Option<(u32, String)> = tx
        .prepare_cached("SELECT epoch, lease_id FROM checkpoints WHERE job_id = ?1")?
        .query_row([job], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((epoch, lease)) = found else {
        return Ok(None);
    };
    exec(
        tx,
        "UPDATE jobs SET epochs_done = ?2,
             latest_json = (SELECT metrics_json FROM epochs WHERE lease_id = ?3 AND epoch = ?2)
         WHERE id = ?1",
        params![job, epoch, lease],
    )?;
    Ok(Some(epoch))
}

/// The checkpoint a current lease resumes from. Errors: StaleLease, NotYourLease, NotFound.
pub fn fetch_checkpoint(
    tx: &Transaction<'_>,
    lease_id: &str,
    worker: &str,
    now: Millis,
) -> Result<Checkpoint, Error> {
    let held = current(tx, lease_id, worker, now)?;
    tx.prepare_cached("SELECT epoch, state FROM checkpoints WHERE job_id = ?1")?
        .query_row([&held.job_id], |r| {
            Ok(Checkpoint {
                epoch: r.get(0)?,
                state: r.get(1)?,
            })
        })
        .optional()?
        .ok_or_else(|| Error::NotFound(format!("a checkpoint for job {}", held.job_id)))
}

/// Forgets a job's checkpoint (it ended: done, or failed for good).
pub(super) fn discard(tx: &Transaction<'_>, job: &str) -> Result<(), Error> {
    exec(tx, "DELETE FROM checkpoints WHERE job_id = ?1", [job])?;
    Ok(())
}
