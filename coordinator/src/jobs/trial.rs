//! One trial as its sweep sees it, for the dashboard's trial page: the job, each attempt (who ran
//! it, when, how it ended, the epochs it reported) and the seeds of its grid point with their
//! curves, so the page can draw the trial against its point's mean.

use rusqlite::{OptionalExtension, Transaction, params};

use super::queries::{JobCurve, curves_page, epochs_of, jobs_page};
use super::{Job, Millis};
use crate::Error;
use jetsweep_proto::metrics::EpochMetrics;

/// Most seeds of a point a trial page reads (a point has as many as the sweep's seed list).
pub const MAX_POINT_SEEDS: u32 = 256;

/// One attempt at a job.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    /// 1-based.
    pub attempt: u32,
    pub worker_id: String,
    pub started_ms: Millis,
    /// None while it runs.
    pub ended_ms: Option<Millis>,
    /// done, failed, expired, paused, cancelled, released…; None while it runs.
    pub outcome: Option<String>,
    pub error: Option<String>,
    /// Jobs that trained in its pack (1: alone); None when its lease request had no id.
    pub pack_size: Option<u32>,
    /// The epochs this attempt reported, in order (a resumed attempt starts after its checkpoint).
    pub epochs: Vec<EpochMetrics>,
}

/// A trial in its sweep.
#[derive(Debug, Clone)]
pub struct TrialDetail {
    /// As the sweep sees it (a job its sweep cancelled reads cancelled there).
    pub job: Job,
    pub attempts: Vec<Attempt>,
    /// Every seed of the trial's grid point in this sweep (this trial among them), in seed order,
    /// with its curve (as [`curves_page`] reads it: each epoch as the latest attempt reported it).
    pub point: Vec<(Job, Vec<EpochMetrics>)>,
}

/// The trial `job_id` of sweep `sweep_id`. Errors: NotFound (no such sweep, or the job is not one
/// of its trials).
pub fn trial_detail(
    tx: &Transaction<'_>,
    sweep_id: &str,
    job_id: &str,
) -> Result<TrialDetail, Error> {
    let (position, point): (u32, i64) = tx
        .prepare_cached(
            "SELECT position, point FROM sweep_jobs WHERE sweep_id = ?1 AND job_id = ?2",
        )?
        .query_row(params![sweep_id, job_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?
        .ok_or_else(|| Error::NotFound(format!("trial {job_id:?} in sweep {sweep_id:?}")))?;
    // A point's seeds are adjacent in grid order (seeds are the innermost axis).
    let (first, count): (u32, u32) = tx
        .prepare_cached(
            "SELECT MIN(position), COUNT(*) FROM sweep_jobs WHERE sweep_id = ?1 AND point = ?2",
        )?
        .query_row(params![sweep_id, point], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let count = count.clamp(1, MAX_POINT_SEEDS);
    // The window always holds the trial itself (sweeps stored before points existed number every
    // job point 0, a window far wider than one point).
    let first = first.max(position.saturating_sub(count - 1));
    let (seeds, _) = jobs_page(tx, sweep_id, first, count)?;
    let (curves, _) = curves_page(tx, sweep_id, first, count, u32::MAX)?;
    let mut curves: std::collections::HashMap<String, Vec<EpochMetrics>> = curves
        .into_iter()
        .map(|JobCurve { job_id, epochs }| (job_id, epochs))
        .collect();
    let job = seeds
        .iter()
        .find(|j| j.id == job_id)
        .cloned()
        .ok_or_else(|| Error::NotFound(format!("trial {job_id:?} in sweep {sweep_id:?}")))?;
    // Sweeps stored before points existed number every job point 0: keep the trial's own
    // configuration only.
    let key = crate::results::point_key(&job.trial);
    let same_point = |j: &Job| crate::results::point_key(&j.trial) == key;
    let mut point: Vec<(Job, Vec<EpochMetrics>)> = seeds
        .into_iter()
        .filter(same_point)
        .map(|j| {
            let curve = curves.remove(&j.id).unwrap_or_default();
            (j, curve)
        })
        .collect();
    point.sort_by_key(|(j, _)| j.trial.seed);
    Ok(TrialDetail {
        attempts: attempts_of(tx, job_id)?,
        job,
        point,
    })
}

/// Whether `job_id` is a trial of sweep `sweep_id`. Errors: NotFound (no such sweep).
pub fn is_trial_of(tx: &Transaction<'_>, sweep_id: &str, job_id: &str) -> Result<bool, Error> {
    super::sweep_head(tx, sweep_id)?;
    Ok(tx
        .prepare_cached("SELECT 1 FROM sweep_jobs WHERE sweep_id = ?1 AND job_id = ?2")?
        .query_row(params![sweep_id, job_id], |_| Ok(()))
        .optional()?
        .is_some())
}

/// A job's attempts in order, each with its pack's size and its epochs.
fn attempts_of(tx: &Transaction<'_>, job_id: &str) -> Result<Vec<Attempt>, Error> {
    // A pack's leases came in one reply to one request: counted through that request's index.
    let mut pack = tx.prepare_cached(
        "SELECT COUNT(*) FROM attempts WHERE worker_id = ?1 AND request_id = ?2 AND COALESCE(pack_lease, lease_id) = ?3",
    )?;
    let rows: Vec<(String, Option<String>, Option<String>, Attempt)> = tx
        .prepare_cached(
            "SELECT lease_id, COALESCE(pack_lease, lease_id), request_id, attempt, worker_id, started_ms, ended_ms, outcome, error
             FROM attempts WHERE job_id = ?1 ORDER BY attempt",
        )?
        .query_map([job_id], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                Attempt {
                    attempt: r.get(3)?,
                    worker_id: r.get(4)?,
                    started_ms: r.get(5)?,
                    ended_ms: r.get(6)?,
                    outcome: r.get(7)?,
                    error: r.get(8)?,
                    pack_size: None,
                    epochs: Vec::new(),
                },
            ))
        })?
        .collect::<Result<_, _>>()?;
    rows.into_iter()
        .map(|(lease, pack_lease, request, mut attempt)| {
            if let Some(request) = request {
                attempt.pack_size = Some(
                    pack.query_row(params![attempt.worker_id, request, pack_lease], |r| {
                        r.get(0)
                    })?,
                );
            }
            attempt.epochs = epochs_of(tx, &lease)?;
            Ok(attempt)
        })
        .collect()
}
