//! Grants remembered per request: a worker that retries LeaseJobs or CompleteJob after a lost reply
//! names the same request id, and gets the leases of the first try that are still current, never a
//! second set (which would sit unused until it expired, spending the jobs' attempts).

use rusqlite::{OptionalExtension, Transaction, params};

use super::rows::{job_columns, job_from_row};
use super::{JobState, LeaseGrant, Millis, lease_jobs};
use crate::Error;
use crate::store::{exec, one};

/// Longest request id accepted.
pub const MAX_REQUEST_ID_CHARS: usize = 64;
/// How long a grant is remembered: far longer than any retry of a lost reply goes on.
pub const REMEMBERED_MS: Millis = 10 * 60 * 1000;

/// Leases up to `max` jobs to `worker` for the request `request_id`: the first time, new leases
/// (remembered); on a retry, those of the first time that are still current. An empty id leases
/// anew every time.
pub fn lease_for_request(
    tx: &Transaction<'_>,
    worker: &str,
    request_id: &str,
    max: u32,
    now: Millis,
) -> Result<Vec<LeaseGrant>, Error> {
    if request_id.is_empty() {
        return lease_jobs(tx, worker, max, now);
    }
    if request_id.chars().count() > MAX_REQUEST_ID_CHARS {
        return Err(Error::InvalidRequest(format!(
            "request_id of {} characters: use at most {MAX_REQUEST_ID_CHARS}",
            request_id.chars().count()
        )));
    }
    let remembered: Option<String> = tx
        .prepare_cached("SELECT lease_ids FROM grants WHERE worker_id = ?1 AND request_id = ?2")?
        .query_row(params![worker, request_id], |r| r.get(0))
        .optional()?;
    if let Some(ids) = remembered {
        return still_current(tx, ids.split(' ').filter(|id| !id.is_empty()));
    }
    let grants = lease_jobs(tx, worker, max, now)?;
    let ids: Vec<&str> = grants.iter().map(|g| g.lease_id.as_str()).collect();
    exec(
        tx,
        "INSERT INTO grants (worker_id, request_id, lease_ids, created_ms) VALUES (?1, ?2, ?3, ?4)",
        params![worker, request_id, ids.join(" "), now],
    )?;
    Ok(grants)
}

/// The grants among `lease_ids` whose job that lease still holds.
fn still_current<'a>(
    tx: &Transaction<'_>,
    lease_ids: impl Iterator<Item = &'a str>,
) -> Result<Vec<LeaseGrant>, Error> {
    let mut stmt = tx.prepare_cached(concat!(
        "SELECT ",
        job_columns!(),
        " FROM jobs WHERE state = 'leased' AND lease_id = ?1 AND id = ?2"
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
                lease_id: lease_id.to_string(),
                attempt: job.attempts,
                expires_at,
                job,
            });
        }
    }
    Ok(out)
}

/// Forgets grants older than [`REMEMBERED_MS`]. Returns how many.
pub fn prune_grants(tx: &Transaction<'_>, now: Millis) -> Result<usize, Error> {
    // Cheap when there is nothing to prune: the index finds the oldest at once.
    let oldest: Option<Millis> = one(tx, "SELECT MIN(created_ms) FROM grants", [], |r| r.get(0))?;
    if oldest.is_none_or(|t| t >= now - REMEMBERED_MS) {
        return Ok(0);
    }
    Ok(exec(
        tx,
        "DELETE FROM grants WHERE created_ms < ?1",
        [now - REMEMBERED_MS],
    )?)
}
