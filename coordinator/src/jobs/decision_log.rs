//! A sweep's early-stopping decisions read back, one row per point judged at a rung: from the
//! `decisions` table (sync halving: one row per rung and cohort, its ranked scores expanded) or
//! the `arrivals` table (ASHA, the median rule: one row per point and rung). What `jetsweep
//! status` and the report show.

use rusqlite::{OptionalExtension, Transaction, params};

use super::halving::StopSettings;
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
    let json: Option<String> = tx
        .prepare_cached("SELECT stop_json FROM sweeps WHERE id = ?1")?
        .query_row([sweep_id], |r| r.get(0))
        .optional()?
        .ok_or_else(|| Error::NotFound(format!("sweep {sweep_id:?}")))?;
    let Some(json) = json else {
        return Ok((None, Vec::new(), 0));
    };
    let settings: StopSettings = serde_json::from_str(&json)
        .map_err(|e| Error::Corrupt(format!("sweep {sweep_id} stop settings: {e}")))?;
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
