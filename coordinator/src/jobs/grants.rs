//! Grants per request: a worker that retries LeaseJobs or CompleteJob after a lost reply names the
//! same request id, and gets the leases of the first try that are still current, never a second
//! set (which would sit unused until it expired). Each lease records the request it was granted
//! for (`attempts.request_id`), so remembering costs one index entry per lease.

use rusqlite::{OptionalExtension, Transaction, params};

use super::checkpoints;
use super::lease::{Ask, Pack, lease_jobs_for};
use super::rows::{job_columns, job_from_row};
use super::{JobState, LeaseGrant, Millis};
use crate::Error;

/// Longest request id accepted.
pub const MAX_REQUEST_ID_CHARS: usize = 64;

/// Leases what `ask` asks to `worker` for the request `request_id`: the first time, new leases;
/// on a retry, those of the first time that are still current. An empty id leases anew every time.
pub fn lease_for_request(
    tx: &Transaction<'_>,
    worker: &str,
    request_id: &str,
    ask: Ask,
    now: Millis,
) -> Result<Vec<Pack>, Error> {
    if request_id.is_empty() {
        return lease_jobs_for(tx, worker, ask, None, now);
    }
    if request_id.chars().count() > MAX_REQUEST_ID_CHARS {
        return Err(Error::InvalidRequest(format!(
            "request_id of {} characters: use at most {MAX_REQUEST_ID_CHARS}",
            request_id.chars().count()
        )));
    }
    // Each lease with the first lease of its pack; a pack's first lease is its oldest job's, so
    // packs come back in the order they were granted.
    let granted: Vec<(String, String)> = tx
        .prepare_cached(
            "SELECT lease_id, COALESCE(pack_lease, lease_id) FROM attempts
             WHERE worker_id = ?1 AND request_id = ?2 ORDER BY lease_id",
        )?
        .query_map(params![worker, request_id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    if granted.is_empty() {
        return lease_jobs_for(tx, worker, ask, Some(request_id), now);
    }
    let mut packs: Vec<(String, Vec<String>)> = Vec::new();
    for (lease, pack_lease) in granted {
        match packs.iter_mut().find(|(head, _)| *head == pack_lease) {
            Some((_, leases)) => leases.push(lease),
            None => packs.push((pack_lease, vec![lease])),
        }
    }
    let mut out = Vec::with_capacity(packs.len());
    for (_, leases) in packs {
        let pack = still_current(tx, &leases)?;
        if !pack.is_empty() {
            out.push(pack);
        }
    }
    Ok(out)
}

/// The grants among `lease_ids` whose job that lease still holds.
fn still_current(tx: &Transaction<'_>, lease_ids: &[String]) -> Result<Pack, Error> {
    let mut stmt = tx.prepare_cached(concat!(
        "SELECT ",
        job_columns!(),
        " FROM jobs WHERE id = ?2 AND state = 'leased' AND lease_id = ?1"
    ))?;
    let mut out = Vec::new();
    for lease_id in lease_ids {
        let job = stmt
            .query_row(
                params![lease_id, super::job_of_lease(lease_id)],
                job_from_row,
            )
            .optional()?;
        // A remembered lease that has ended since (completed, expired) is not granted again.
        let Some(job) = job else { continue };
        let job = job?;
        if let JobState::Leased { expires_at, .. } = job.state {
            out.push(LeaseGrant {
                lease_id: lease_id.clone(),
                attempt: job.attempts,
                expires_at,
                resume_epoch: checkpoints::resume_point(tx, &job.id)?,
                job,
            });
        }
    }
    Ok(out)
}
