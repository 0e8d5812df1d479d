//! Reads: a sweep's head and counts, the sweeps, a sweep's jobs (by page) and their outcomes, a
//! lease's epochs, a dataset by its hash.

use rusqlite::{OptionalExtension, Transaction, params};

use super::JobState;
use super::rows::{corrupt, job_columns, job_from_row, state_in_sweep};
use super::{Job, SweepCounts};
use std::collections::HashMap;

use crate::Error;
use crate::clock::Millis;
use crate::results::TrialOutcome;
use crate::sweep::Trial;
use jetsweep_proto::dataset::{DatasetRef, parse_validation};
use jetsweep_proto::metrics::EpochMetrics;
use jetsweep_proto::model::Architecture;
use jetsweep_proto::state::JobStatus;

/// A sweep's name, dataset and flags, its counts left at zero (one row: cheap). Errors: NotFound.
pub fn sweep_head(tx: &Transaction<'_>, sweep_id: &str) -> Result<SweepCounts, Error> {
    type SweepRow = (
        String,
        String,
        i64,
        bool,
        (String, String, i64, bool, String),
        String,
    );
    let row: SweepRow = tx
        .prepare_cached(
            "SELECT id, name, created_ms, cancel_requested, dataset_spec, dataset_sha256, dataset_bytes, synthetic, validation, submitted_by FROM sweeps WHERE id = ?1",
        )?
        .query_row([sweep_id], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                (r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?, r.get(8)?),
                r.get(9)?,
            ))
        })
        .optional()?
        .ok_or_else(|| Error::NotFound(format!("sweep {sweep_id:?}")))?;
    let (
        id,
        name,
        created_ms,
        cancel_requested,
        (spec, sha256, bytes, synthetic, validation),
        submitted_by,
    ) = row;
    let c = SweepCounts {
        dataset: Some(DatasetRef {
            spec,
            sha256,
            bytes: bytes as u64,
            synthetic,
            validation: parse_validation(&validation)
                .map_err(|e| corrupt(&format!("sweep {id} validation"), e))?,
        }),
        id,
        name,
        created_ms,
        cancel_requested,
        submitted_by,
        ..SweepCounts::default()
    };
    Ok(c)
}

/// A sweep's counts by state (reading every job of it: for a large sweep, the costly part).
/// Errors: NotFound.
pub fn sweep_counts(tx: &Transaction<'_>, sweep_id: &str) -> Result<SweepCounts, Error> {
    let mut c = sweep_head(tx, sweep_id)?;
    let mut stmt = tx.prepare_cached(concat!(
        "SELECT ",
        state_in_sweep!(),
        ", COUNT(*), SUM(s.reused), SUM(j.epochs_done), SUM(j.max_epochs)
         FROM sweep_jobs s JOIN jobs j ON j.id = s.job_id WHERE s.sweep_id = ?1 GROUP BY 1",
    ))?;
    let rows = stmt.query_map([sweep_id], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, u32>(1)?,
            r.get::<_, u32>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, i64>(4)?,
        ))
    })?;
    for row in rows {
        let (state, n, reused, trained, planned) = row?;
        let status: JobStatus = state
            .parse()
            .map_err(|e| corrupt(&format!("sweep {sweep_id} job state"), e))?;
        c.total += n;
        c.reused += reused;
        *c.count_mut(status) = n;
        let (trained, planned) = (trained.max(0) as u64, planned.max(0) as u64);
        c.epochs_done += trained;
        c.epochs_total += if status.is_open() { planned } else { trained };
    }
    Ok(c)
}

/// A page of the sweeps, newest first: up to `limit` from the `from`-th, with their counts, and
/// how many sweeps there are (a list of thousands reads only the page it shows).
pub fn sweeps_page(
    tx: &Transaction<'_>,
    from: u32,
    limit: u32,
) -> Result<(Vec<SweepCounts>, u32), Error> {
    let total: u32 = tx.query_row("SELECT COUNT(*) FROM sweeps", [], |r| r.get(0))?;
    let ids: Vec<String> = tx
        .prepare_cached(
            "SELECT id FROM sweeps ORDER BY created_ms DESC, rowid DESC LIMIT ?1 OFFSET ?2",
        )?
        .query_map(params![limit, from], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let sweeps = ids
        .iter()
        .map(|id| sweep_counts(tx, id))
        .collect::<Result<_, _>>()?;
    Ok((sweeps, total))
}

/// What a sweep has cost and found so far, for the sweep list.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SweepActivity {
    /// Wall time its workers spent on it (ms): each pack's, from its first attempt's start to its
    /// last one's end (the running ones until `now`), so jobs trained together as a pack count
    /// once, not once each.
    pub compute_ms: i64,
    /// Packs still running (the rate `compute_ms` grows at).
    pub open_packs: i64,
    /// Mean wall time of an attempt that finished its job (ms).
    pub mean_done_ms: Option<f64>,
    /// The finished trial with the lowest validation loss at its best epoch (chosen on
    /// validation, as the results choose).
    pub best: Option<BestTrial>,
}

/// A sweep's best finished trial so far.
#[derive(Debug, Clone, PartialEq)]
pub struct BestTrial {
    pub job_id: String,
    /// Its test accuracy at its best epoch.
    pub best_test_acc: f64,
}

/// A sweep's [`SweepActivity`] as of `now` (for a sweep the caller has just listed: an unknown
/// one has none).
pub fn sweep_activity(
    tx: &Transaction<'_>,
    sweep_id: &str,
    now: Millis,
) -> Result<SweepActivity, Error> {
    let (compute_ms, open_packs): (Option<i64>, Option<i64>) = tx
        .prepare_cached(
            "SELECT SUM(ended - started), SUM(open) FROM (
                 SELECT MIN(a.started_ms) AS started, MAX(COALESCE(a.ended_ms, ?2)) AS ended,
                        MAX(a.ended_ms IS NULL) AS open
                 FROM sweep_jobs s JOIN attempts a ON a.job_id = s.job_id WHERE s.sweep_id = ?1
                 GROUP BY COALESCE(a.pack_lease, a.lease_id))",
        )?
        .query_row(params![sweep_id, now], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let mean_done_ms: Option<f64> = tx
        .prepare_cached(
            "SELECT AVG(a.ended_ms - a.started_ms)
             FROM sweep_jobs s JOIN attempts a ON a.job_id = s.job_id
             WHERE s.sweep_id = ?1 AND a.outcome = 'done'",
        )?
        .query_row([sweep_id], |r| r.get(0))?;
    let best = tx
        .prepare_cached(concat!(
            "SELECT j.id, json_extract(j.result_json, '$.best_test_acc')
             FROM sweep_jobs s JOIN jobs j ON j.id = s.job_id
             WHERE s.sweep_id = ?1 AND j.summary_json IS NOT NULL AND ",
            state_in_sweep!(),
            " = 'done' ORDER BY json_extract(j.summary_json, '$.best_val_loss') LIMIT 1"
        ))?
        .query_row([sweep_id], |r| {
            Ok(BestTrial {
                job_id: r.get(0)?,
                best_test_acc: r.get(1)?,
            })
        })
        .optional()?;
    Ok(SweepActivity {
        compute_ms: compute_ms.unwrap_or(0).max(0),
        open_packs: open_packs.unwrap_or(0),
        mean_done_ms,
        best,
    })
}

/// One job. Errors: NotFound.
pub fn get_job(tx: &Transaction<'_>, job_id: &str) -> Result<Job, Error> {
    let mut stmt = tx.prepare_cached(concat!(
        "SELECT ",
        job_columns!(),
        " FROM jobs WHERE id = ?1"
    ))?;
    stmt.query_row([job_id], job_from_row)
        .optional()?
        .ok_or_else(|| Error::NotFound(format!("job {job_id:?}")))?
}

/// A page of a sweep's jobs in grid order, from grid position `from_position` on.
pub fn list_jobs(
    tx: &Transaction<'_>,
    sweep_id: &str,
    from_position: u32,
    limit: u32,
) -> Result<Vec<Job>, Error> {
    Ok(jobs_page(tx, sweep_id, from_position, limit)?.0)
}

/// Up to `limit` jobs of a sweep in grid order, from grid position `from_position` on, and the
/// position the next page starts at (`None`: this was the last). Walks the sweep's position index:
/// a page costs its own size, wherever it starts. Errors: NotFound.
pub fn jobs_page(
    tx: &Transaction<'_>,
    sweep_id: &str,
    from_position: u32,
    limit: u32,
) -> Result<(Vec<Job>, Option<u32>), Error> {
    sweep_head(tx, sweep_id)?;
    let mut stmt = tx.prepare_cached(concat!(
        "SELECT ",
        job_columns!(),
        ", s.position, ",
        state_in_sweep!(),
        " FROM sweep_jobs s JOIN jobs j ON j.id = s.job_id WHERE s.sweep_id = ?1 AND s.position >= ?3 ORDER BY s.position LIMIT ?2"
    ))?;
    let position_column = job_columns!().split(',').count();
    let mut rows = stmt.query(params![sweep_id, i64::from(limit) + 1, from_position])?;
    let (mut page, mut next) = (Vec::new(), None);
    while let Some(r) = rows.next()? {
        let position: u32 = r.get(position_column)?;
        if page.len() == limit as usize {
            next = Some(position);
            break;
        }
        page.push(job_in_sweep(r, position_column + 1)?);
    }
    drop(rows);
    let mut page: Vec<Job> = page.into_iter().collect::<Result<_, _>>()?;
    // Who ran each job that is not running now (its latest attempt's worker).
    let mut last = tx.prepare_cached(
        "SELECT worker_id FROM attempts WHERE job_id = ?1 ORDER BY attempt DESC LIMIT 1",
    )?;
    for job in page
        .iter_mut()
        .filter(|j| j.attempts > 0 && !matches!(j.state, JobState::Leased { .. }))
    {
        job.last_worker = last.query_row([&job.id], |r| r.get(0)).optional()?;
    }
    Ok((page, next))
}

/// A job row followed, at `view_column`, by its [`state_in_sweep`]: a job its sweep cancelled
/// reads as cancelled there, whatever its own state now.
fn job_in_sweep(r: &rusqlite::Row<'_>, view_column: usize) -> rusqlite::Result<Result<Job, Error>> {
    let view: String = r.get(view_column)?;
    Ok(job_from_row(r)?.map(|mut job| {
        if view == "cancelled" && job.state.status() != JobStatus::Cancelled {
            job.state = JobState::Cancelled {
                reason: "sweep cancelled".into(),
            };
        }
        job
    }))
}

/// The reference of a dataset some sweep uses, by its content hash. Errors: NotFound.
pub fn dataset_by_sha(tx: &Transaction<'_>, sha256: &str) -> Result<DatasetRef, Error> {
    let row: Option<(String, i64, bool, String)> = tx
        .prepare_cached("SELECT dataset_spec, dataset_bytes, synthetic, validation FROM sweeps WHERE dataset_sha256 = ?1 LIMIT 1")?
        .query_row([sha256], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .optional()?;
    let (spec, bytes, synthetic, validation) =
        row.ok_or_else(|| Error::NotFound(format!("dataset {sha256}")))?;
    Ok(DatasetRef {
        spec,
        sha256: sha256.to_string(),
        bytes: bytes as u64,
        synthetic,
        validation: parse_validation(&validation)
            .map_err(|e| corrupt(&format!("dataset {sha256} validation"), e))?,
    })
}

/// Per-epoch metrics stored for a lease, in epoch order.
pub fn epochs_of(tx: &Transaction<'_>, lease_id: &str) -> Result<Vec<EpochMetrics>, Error> {
    tx.prepare_cached("SELECT metrics_json FROM epochs WHERE lease_id = ?1 ORDER BY epoch")?
        .query_map([lease_id], |r| r.get::<_, String>(0))?
        .map(|j| serde_json::from_str(&j?).map_err(|e| corrupt("epoch", e)))
        .collect()
}

/// Every job of a sweep as results see it (trial, state, and result with its epoch summary when
/// done), in grid order: read without the rest of each row (a 100,000-job sweep is read often).
/// A row that cannot be read is left out and logged: it fails alone, the sweep's results stay
/// readable.
pub fn sweep_outcomes(tx: &Transaction<'_>, sweep_id: &str) -> Result<Vec<TrialOutcome>, Error> {
    sweep_head(tx, sweep_id)?;
    let mut stmt = tx.prepare_cached(concat!(
        "SELECT j.id, j.model, j.optimizer, j.batch_size, j.max_epochs, j.learning_rate, j.seed, ",
        state_in_sweep!(),
        ", j.result_json, j.summary_json, j.weight_decay, s.stopped_epoch
         FROM sweep_jobs s JOIN jobs j ON j.id = s.job_id
         WHERE s.sweep_id = ?1 ORDER BY s.position"
    ))?;
    let mut rows = stmt.query([sweep_id])?;
    let mut out = Vec::new();
    // Sweeps name few models: each name is parsed once.
    let mut models: HashMap<String, Architecture> = HashMap::new();
    while let Some(r) = rows.next()? {
        let id: String = r.get(0)?;
        let mut read = || -> Result<TrialOutcome, String> {
            let name: String = r.get(1).map_err(|e| e.to_string())?;
            let model = match models.get(&name) {
                Some(m) => m.clone(),
                None => {
                    let m: Architecture = name.parse().map_err(|e| format!("model: {e}"))?;
                    models.insert(name, m.clone());
                    m
                }
            };
            let optimizer: String = r.get(2).map_err(|e| e.to_string())?;
            let status: String = r.get(7).map_err(|e| e.to_string())?;
            let status: JobStatus = status.parse().map_err(|e| format!("state: {e}"))?;
            let done = if status == JobStatus::Done {
                let result: Option<String> = r.get(8).map_err(|e| e.to_string())?;
                let summary: Option<String> = r.get(9).map_err(|e| e.to_string())?;
                Some((
                    serde_json::from_str(result.as_deref().unwrap_or("null"))
                        .map_err(|e| format!("result: {e}"))?,
                    summary
                        .map(|s| serde_json::from_str(&s))
                        .transpose()
                        .map_err(|e| format!("summary: {e}"))?,
                ))
            } else {
                None
            };
            Ok(TrialOutcome {
                trial: Trial {
                    model,
                    optimizer: optimizer.parse().map_err(|e| format!("optimizer: {e}"))?,
                    batch_size: r.get(3).map_err(|e| e.to_string())?,
                    max_epochs: r.get(4).map_err(|e| e.to_string())?,
                    learning_rate: r.get(5).map_err(|e| e.to_string())?,
                    seed: r.get::<_, i64>(6).map_err(|e| e.to_string())? as u64,
                    weight_decay: r.get(10).map_err(|e| e.to_string())?,
                },
                status,
                done,
                stopped_at: r.get(11).map_err(|e| e.to_string())?,
            })
        };
        match read() {
            Ok(outcome) => out.push(outcome),
            Err(e) => {
                tracing::warn!(job = %id, error = %e, "job unreadable; left out of the results")
            }
        }
    }
    Ok(out)
}

/// How many jobs wait in the queue and how many run now (leased), over every sweep: the work a
/// cluster's workers have before them. Two counts over partial indexes: cheap at any queue length.
pub fn open_work(
    tx: &Transaction<'_>,
    device: Option<crate::sweep::Device>,
) -> Result<(u64, u64), Error> {
    let count = |state: &str| -> Result<u64, Error> {
        Ok(match device {
            None => tx
                .prepare_cached(&format!(
                    "SELECT COUNT(*) FROM jobs WHERE state = '{state}'"
                ))?
                .query_row([], |r| r.get::<_, i64>(0))?,
            Some(d) => tx
                .prepare_cached(&format!(
                    "SELECT COUNT(*) FROM jobs j JOIN sweep_shares w ON w.sweep_id = j.last_sweep
                     WHERE j.state = '{state}' AND w.device IN ('any', ?1)"
                ))?
                .query_row([d.name()], |r| r.get::<_, i64>(0))?,
        } as u64)
    };
    Ok((count("queued")?, count("leased")?))
}

/// The datasets (by sha256) that queued or running jobs need.
pub fn datasets_in_use(tx: &Transaction<'_>) -> Result<std::collections::HashSet<String>, Error> {
    Ok(tx
        .prepare_cached(
            "SELECT DISTINCT dataset_sha256 FROM jobs WHERE state IN ('queued', 'leased', 'paused')",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?)
}

/// Every epoch the first `max_jobs` jobs of a sweep (in grid order) reported, per job in epoch
/// order (see [`curves_page`]). Errors: NotFound.
pub fn sweep_curves(
    tx: &Transaction<'_>,
    sweep_id: &str,
    max_jobs: u32,
) -> Result<std::collections::BTreeMap<String, Vec<EpochMetrics>>, Error> {
    let (curves, _) = curves_page(tx, sweep_id, 0, max_jobs, u32::MAX)?;
    Ok(curves.into_iter().map(|c| (c.job_id, c.epochs)).collect())
}

/// One job's learning curve.
#[derive(Debug, Clone, PartialEq)]
pub struct JobCurve {
    pub job_id: String,
    pub epochs: Vec<EpochMetrics>,
}

/// The curves of up to `max_jobs` jobs of a sweep from grid position `from`, in grid order, each
/// epoch as the job's latest attempt reported it (a resumed attempt continues the curve of the one
/// before); jobs that reported nothing are left out. The page ends early, at a job boundary, once
/// it holds `max_epochs` epochs (it always holds the first job). Returns the position the next
/// page starts at, `None` after the last. Errors: NotFound.
pub fn curves_page(
    tx: &Transaction<'_>,
    sweep_id: &str,
    from: u32,
    max_jobs: u32,
    max_epochs: u32,
) -> Result<(Vec<JobCurve>, Option<u32>), Error> {
    sweep_head(tx, sweep_id)?;
    let positions: Vec<u32> = tx
        .prepare_cached(
            "SELECT position FROM sweep_jobs WHERE sweep_id = ?1 AND position >= ?2 ORDER BY position LIMIT ?3",
        )?
        .query_map(params![sweep_id, from, max_jobs], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let (Some(&first), Some(&last)) = (positions.first(), positions.last()) else {
        return Ok((Vec::new(), None));
    };
    let mut next = (positions.len() as u32 == max_jobs).then_some(last + 1);
    let mut stmt = tx.prepare_cached(
        "SELECT s.position, a.job_id, e.epoch, e.metrics_json FROM sweep_jobs s
         JOIN attempts a ON a.job_id = s.job_id
         JOIN epochs e ON e.lease_id = a.lease_id
         WHERE s.sweep_id = ?1 AND s.position BETWEEN ?2 AND ?3
         ORDER BY s.position, e.epoch, a.attempt DESC",
    )?;
    let mut rows = stmt.query(params![sweep_id, first, last])?;
    let mut curves: Vec<JobCurve> = Vec::new();
    let (mut held, mut position_of_last) = (0u32, first);
    while let Some(r) = rows.next()? {
        let (position, job, epoch, json): (u32, String, u32, String) =
            (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
        if curves.last().is_none_or(|c| c.job_id != job) {
            if held >= max_epochs {
                next = Some(position);
                break;
            }
            curves.push(JobCurve {
                job_id: job,
                epochs: Vec::new(),
            });
            position_of_last = position;
        }
        let curve = &mut curves.last_mut().expect("pushed above").epochs;
        // The first row of an epoch is its latest attempt's.
        if curve.last().is_some_and(|m| m.epoch == epoch) {
            continue;
        }
        match serde_json::from_str::<EpochMetrics>(&json) {
            Ok(m) => {
                curve.push(m);
                held += 1;
            }
            Err(e) => {
                tracing::warn!(sweep = %sweep_id, position = position_of_last, epoch, error = %e, "stored epoch unreadable; left out of the curve")
            }
        }
    }
    Ok((curves, next))
}

/// What changed in a sweep after the cursors: epochs stored after epoch row `after_epoch_row`
/// (with their job ids, at most `limit`), and the jobs updated at or after `jobs_since` (ms).
/// Returns them with the new epoch cursor. Errors: NotFound.
#[allow(clippy::type_complexity)]
pub fn sweep_changes(
    tx: &Transaction<'_>,
    sweep_id: &str,
    after_epoch_row: i64,
    jobs_since: Millis,
    limit: u32,
) -> Result<(Vec<(String, EpochMetrics)>, Vec<Job>, i64), Error> {
    sweep_head(tx, sweep_id)?;
    let mut cursor = after_epoch_row;
    let mut epochs = Vec::new();
    let mut stmt = tx.prepare_cached(
        "SELECT e.rowid, a.job_id, e.metrics_json FROM epochs e
         JOIN attempts a ON a.lease_id = e.lease_id
         JOIN sweep_jobs s ON s.job_id = a.job_id AND s.sweep_id = ?1
         WHERE e.rowid > ?2 ORDER BY e.rowid LIMIT ?3",
    )?;
    let mut rows = stmt.query(params![sweep_id, after_epoch_row, limit])?;
    while let Some(r) = rows.next()? {
        cursor = r.get(0)?;
        let json: String = r.get(2)?;
        if let Ok(m) = serde_json::from_str::<EpochMetrics>(&json) {
            epochs.push((r.get(1)?, m));
        }
    }
    let mut stmt = tx.prepare_cached(concat!(
        "SELECT ",
        job_columns!(),
        ", ",
        state_in_sweep!(),
        " FROM sweep_jobs s JOIN jobs j ON j.id = s.job_id WHERE s.sweep_id = ?1 AND j.updated_ms >= ?2 ORDER BY s.position LIMIT ?3"
    ))?;
    let view_column = job_columns!().split(',').count();
    let jobs = stmt
        .query_map(params![sweep_id, jobs_since, limit], |r| {
            job_in_sweep(r, view_column)
        })?
        .map(|r| r?)
        .collect::<Result<_, _>>()?;
    Ok((epochs, jobs, cursor))
}

/// The newest epoch row (the cursor a fresh watcher of changes starts after).
pub fn last_epoch_row(tx: &Transaction<'_>) -> Result<i64, Error> {
    Ok(
        tx.query_row("SELECT COALESCE(MAX(rowid), 0) FROM epochs", [], |r| {
            r.get(0)
        })?,
    )
}
