//! A sweep's early-stopping decisions read back, one row per point judged at a rung: from the
//! `decisions` table (sync halving: one row per rung and cohort, its ranked scores expanded) or
//! the `arrivals` table (ASHA, the median rule: one row per point and rung). What `jetsweep
//! status` and the report show.

use rusqlite::{OptionalExtension, Transaction, params};

use super::halving::{StopSettings, stop_settings};
use super::queries::get_job;
use super::{Job, Millis};
use crate::Error;

/// One point judged at one rung.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionRow {
    pub rung: u32,
    pub cohort: String,
    pub point: u32,
    /// The point's first seed: its hyperparameters.
    pub job: Job,
    /// NaN when a seed diverged.
    pub mean: f64,
    pub std: f64,
    pub seeds: u32,
    /// kept | stopped (sync); paused | promoted | stopped (async); continued | stopped (median).
    pub action: String,
    pub cutoff: Option<f64>,
    pub among: u32,
    pub decided_ms: Millis,
}

/// A page of a sweep's decisions: its stopping settings (None: it does not stop early), up to
/// `limit` rows from the `from`-th, and how many rows there are. Errors: NotFound.
pub fn decisions_page(
    tx: &Transaction<'_>,
    sweep_id: &str,
    from: u32,
    limit: u32,
) -> Result<(Option<StopSettings>, Vec<DecisionRow>, u32), Error> {
    let Some(settings) = stop_settings(tx, sweep_id)? else {
        return Ok((None, Vec::new(), 0));
    };
    let (rows, total) = if settings.rule == "halving" && settings.mode == "sync" {
        sync_rows(tx, sweep_id, from, limit)?
    } else {
        arrival_rows(tx, sweep_id, from, limit)?
    };
    Ok((Some(settings), rows, total))
}

/// A point's first seed's job.
fn point_job(tx: &Transaction<'_>, sweep_id: &str, point: u32) -> Result<Job, Error> {
    let id: String = tx
        .prepare_cached(
            "SELECT job_id FROM sweep_jobs WHERE sweep_id = ?1 AND point = ?2 ORDER BY position LIMIT 1",
        )?
        .query_row(params![sweep_id, point], |r| r.get(0))
        .optional()?
        .ok_or_else(|| Error::Corrupt(format!("sweep {sweep_id} has no job for point {point}")))?;
    get_job(tx, &id)
}

/// Sync halving's decisions, each rung's ranked scores one row per point.
fn sync_rows(
    tx: &Transaction<'_>,
    sweep_id: &str,
    from: u32,
    limit: u32,
) -> Result<(Vec<DecisionRow>, u32), Error> {
    struct Stored {
        rung: u32,
        cohort: String,
        decided_ms: Millis,
        scores: String,
        cutoff: Option<f64>,
        kept: String,
    }
    let stored: Vec<Stored> = tx
        .prepare_cached(
            "SELECT rung, cohort, decided_ms, scores_json, cutoff, kept_json FROM decisions
             WHERE sweep_id = ?1 ORDER BY rung, decided_ms, cohort",
        )?
        .query_map([sweep_id], |r| {
            Ok(Stored {
                rung: r.get(0)?,
                cohort: r.get(1)?,
                decided_ms: r.get(2)?,
                scores: r.get(3)?,
                cutoff: r.get(4)?,
                kept: r.get(5)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    #[derive(serde::Deserialize)]
    struct Ranked {
        point: u32,
        mean: Option<f64>,
        std: Option<f64>,
        seeds: u32,
    }
    let corrupt = |e: serde_json::Error| Error::Corrupt(format!("sweep {sweep_id} decision: {e}"));
    let mut rows = Vec::new();
    let mut total = 0u32;
    for d in stored {
        let ranked: Vec<Ranked> = serde_json::from_str(&d.scores).map_err(corrupt)?;
        let kept: Vec<u32> = serde_json::from_str(&d.kept).map_err(corrupt)?;
        let among = ranked.len() as u32;
        for s in ranked {
            total += 1;
            if total <= from || rows.len() >= limit as usize {
                continue;
            }
            rows.push(DecisionRow {
                rung: d.rung,
                cohort: d.cohort.clone(),
                point: s.point,
                job: point_job(tx, sweep_id, s.point)?,
                mean: s.mean.unwrap_or(f64::NAN),
                std: s.std.unwrap_or(f64::NAN),
                seeds: s.seeds,
                action: if kept.contains(&s.point) {
                    "kept"
                } else {
                    "stopped"
                }
                .to_string(),
                cutoff: d.cutoff,
                among,
                decided_ms: d.decided_ms,
            });
        }
    }
    Ok((rows, total))
}

/// Arrivals at asynchronous rungs, rung by rung in the order points arrived.
fn arrival_rows(
    tx: &Transaction<'_>,
    sweep_id: &str,
    from: u32,
    limit: u32,
) -> Result<(Vec<DecisionRow>, u32), Error> {
    let total: u32 = tx
        .prepare_cached("SELECT COUNT(*) FROM arrivals WHERE sweep_id = ?1")?
        .query_row([sweep_id], |r| r.get(0))?;
    type Arrival = (
        u32,
        String,
        u32,
        Option<f64>,
        Option<f64>,
        u32,
        String,
        Option<f64>,
        u32,
        Millis,
    );
    let arrivals: Vec<Arrival> = tx
        .prepare_cached(
            "SELECT rung, cohort, point, mean, std, seeds, action, cutoff, among, decided_ms FROM arrivals
             WHERE sweep_id = ?1 ORDER BY rung, arrived_ms, point LIMIT ?2 OFFSET ?3",
        )?
        .query_map(params![sweep_id, limit, from], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
                r.get(9)?,
            ))
        })?
        .collect::<Result<_, _>>()?;
    let rows = arrivals
        .into_iter()
        .map(
            |(rung, cohort, point, mean, std, seeds, action, cutoff, among, decided_ms)| {
                Ok(DecisionRow {
                    rung,
                    cohort,
                    point,
                    job: point_job(tx, sweep_id, point)?,
                    mean: mean.unwrap_or(f64::NAN),
                    std: std.unwrap_or(f64::NAN),
                    seeds,
                    action,
                    cutoff,
                    among,
                    decided_ms,
                })
            },
        )
        .collect::<Result<_, Error>>()?;
    Ok((rows, total))
}

/// One rung's decisions counted: what the dashboard's rung table shows.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RungTally {
    pub rung: u32,
    pub judged: u32,
    /// Kept (sync), promoted (async) or judged no worse than the median.
    pub went_on: u32,
    pub stopped: u32,
    pub paused: u32,
    /// The lowest and highest cutoff the rung's decisions compared with.
    pub cutoff_low: Option<f64>,
    pub cutoff_high: Option<f64>,
}

/// What [`rung_tallies`] reads.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stopping {
    pub settings: Option<StopSettings>,
    pub rungs: Vec<RungTally>,
    pub trial_epochs: u64,
    pub full_epochs: u64,
}

/// A sweep's early stopping in numbers: its settings (None: it does not stop early), each rung's
/// tally (aggregated in the store: its cost does not grow with the page a table shows), and the
/// trial-epochs trained against what every trial to its last epoch takes. Errors: NotFound.
pub fn rung_tallies(tx: &Transaction<'_>, sweep_id: &str) -> Result<Stopping, Error> {
    let Some(settings) = stop_settings(tx, sweep_id)? else {
        return Ok(Stopping::default());
    };
    let sql = if settings.rule == "halving" && settings.mode == "sync" {
        "SELECT rung, SUM(json_array_length(scores_json)), SUM(json_array_length(kept_json)),
                SUM(json_array_length(stopped_json)), 0, MIN(cutoff), MAX(cutoff)
         FROM decisions WHERE sweep_id = ?1 GROUP BY rung ORDER BY rung"
    } else {
        "SELECT rung, COUNT(*), SUM(action IN ('promoted', 'continued')), SUM(action = 'stopped'),
                SUM(action = 'paused'), MIN(cutoff), MAX(cutoff)
         FROM arrivals WHERE sweep_id = ?1 GROUP BY rung ORDER BY rung"
    };
    let tallies = tx
        .prepare_cached(sql)?
        .query_map([sweep_id], |r| {
            Ok(RungTally {
                rung: r.get(0)?,
                judged: r.get(1)?,
                went_on: r.get(2)?,
                stopped: r.get(3)?,
                paused: r.get(4)?,
                cutoff_low: r.get(5)?,
                cutoff_high: r.get(6)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    let epochs: (i64, i64) = tx
        .prepare_cached(
            "SELECT COALESCE(SUM(j.epochs_done), 0), COALESCE(SUM(j.max_epochs), 0)
             FROM sweep_jobs s JOIN jobs j ON j.id = s.job_id WHERE s.sweep_id = ?1",
        )?
        .query_row([sweep_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(Stopping {
        settings: Some(settings),
        rungs: tallies,
        trial_epochs: epochs.0.max(0) as u64,
        full_epochs: epochs.1.max(0) as u64,
    })
}
