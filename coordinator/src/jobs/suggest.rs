//! TPE in the store. A TPE sweep is submitted with its startup points (drawn at random); each time
//! one of its points settles (every seed finished, failed or stopped), the transaction that
//! settled it suggests new points ([`crate::sweep::search::tpe::suggest`]) until as many are in
//! flight as at the start, or the sweep has all its `points`. The model is fitted on the scores
//! (seed means) at the deepest rung that at least [`tpe::STARTUP`] points have reached — or, before
//! any has, the rung most points have reached; points in flight count as the worst told (the
//! constant liar). Each suggested point is a row (`suggested_points`), so a restarted
//! coordinator knows it, and its jobs join the sweep as a submitted point's do.

use std::collections::BTreeMap;

use rusqlite::{Transaction, params};

use super::Millis;
use super::halving::StopSettings;
use super::submit::link_trials;
use crate::Error;
use crate::stopping;
use crate::sweep::SweepSpec;
use crate::sweep::search::Metric;
use crate::sweep::search::draw::Point;
use crate::sweep::search::space::{point_from_json, point_to_json};
use crate::sweep::search::tpe::{self, Told};
use jetsweep_proto::metrics::EpochMetrics;

/// Tries at other indices when a suggestion repeats a point or does not fit `max_params`.
const RETRIES: u64 = 32;

/// Suggests points for a TPE sweep until as many are in flight as it started with.
pub(super) fn refill(
    tx: &Transaction<'_>,
    sweep_id: &str,
    settings: &StopSettings,
    now: Millis,
) -> Result<(), Error> {
    let (toml, sha, cancelled): (String, String, bool) = tx
        .prepare_cached(
            "SELECT spec_toml, dataset_sha256, cancel_requested FROM sweeps WHERE id = ?1",
        )?
        .query_row([sweep_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    if cancelled {
        return Ok(());
    }
    let spec = SweepSpec::parse(&toml)
        .map_err(|e| Error::Corrupt(format!("sweep {sweep_id} file no longer parses: {e}")))?;
    let (count, in_flight): (u32, u32) = tx
        .prepare_cached(
            "SELECT COALESCE(MAX(s.point) + 1, 0),
                    COUNT(DISTINCT CASE WHEN s.stopped_epoch IS NULL AND j.state IN ('queued', 'leased', 'paused') THEN s.point END)
             FROM sweep_jobs s JOIN jobs j ON j.id = s.job_id WHERE s.sweep_id = ?1",
        )?
        .query_row([sweep_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let wanted = spec.points.len() as u32;
    let (mut count, mut in_flight) = (count, in_flight);
    while u64::from(count) < spec.search.points && in_flight < wanted {
        let points = points_of(tx, sweep_id, &spec, count)?;
        let (told, rung) = told(tx, sweep_id, &spec, settings, &points)?;
        let told_ids: Vec<u32> = told.iter().map(|(p, _)| *p).collect();
        let flying: Vec<Point> = flying(tx, sweep_id)?
            .into_iter()
            .filter(|p| !told_ids.contains(p))
            .filter_map(|p| points.get(p as usize).cloned())
            .collect();
        let told: Vec<Told> = told
            .into_iter()
            .map(|(p, score)| Told {
                point: points[p as usize].clone(),
                score,
            })
            .collect();
        let admissible = |p: &Point| spec.fits(p) && !points.contains(p);
        let Some(point) = (0..RETRIES).find_map(|k| {
            let index = u64::from(count) + k * spec.search.points;
            tpe::suggest(
                &spec.search.space,
                spec.search.search_seed,
                index,
                &told,
                &flying,
                &admissible,
            )
        }) else {
            tracing::warn!(sweep = %sweep_id, point = count, "TPE found no new point that fits; the sweep ends with fewer points");
            return Ok(());
        };
        record_suggestion(tx, sweep_id, count, &point, told.len(), rung, now)?;
        let trials = spec.trials_of(&point);
        let first = count as usize * trials.len();
        link_trials(tx, sweep_id, &spec, &sha, &trials, first, now)?;
        tracing::info!(sweep = %sweep_id, point = count, told = told.len(), rung, "TPE suggested a point");
        count += 1;
        in_flight += 1;
    }
    Ok(())
}

/// Keeps a suggested point (a restarted coordinator reads it back in [`points_of`]).
fn record_suggestion(
    tx: &Transaction<'_>,
    sweep_id: &str,
    point: u32,
    values: &Point,
    told: usize,
    rung: Option<u32>,
    now: Millis,
) -> Result<(), Error> {
    crate::store::exec(
        tx,
        "INSERT INTO suggested_points (sweep_id, point, values_json, suggested_ms, told, rung) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            sweep_id,
            point,
            point_to_json(values),
            now,
            told as u32,
            rung
        ],
    )?;
    Ok(())
}

/// The sweep's first `count` points: the startup ones from the file, the rest as suggested.
fn points_of(
    tx: &Transaction<'_>,
    sweep_id: &str,
    spec: &SweepSpec,
    count: u32,
) -> Result<Vec<Point>, Error> {
    let mut points = spec.points.clone();
    points.truncate(count as usize);
    let suggested: Vec<String> = tx
        .prepare_cached(
            "SELECT values_json FROM suggested_points WHERE sweep_id = ?1 AND point >= ?2 ORDER BY point",
        )?
        .query_map(params![sweep_id, points.len() as u32], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for text in suggested {
        points.push(
            point_from_json(&spec.search.space, &text)
                .map_err(|e| Error::Corrupt(format!("sweep {sweep_id} suggested point: {e}")))?,
        );
    }
    if points.len() != count as usize {
        return Err(Error::Corrupt(format!(
            "sweep {sweep_id} has jobs for {count} points but knows {} of them",
            points.len()
        )));
    }
    Ok(points)
}

/// Points with a seed still queued, running or paused.
fn flying(tx: &Transaction<'_>, sweep_id: &str) -> Result<Vec<u32>, Error> {
    Ok(tx
        .prepare_cached(
            "SELECT DISTINCT s.point FROM sweep_jobs s JOIN jobs j ON j.id = s.job_id
             WHERE s.sweep_id = ?1 AND s.stopped_epoch IS NULL AND j.state IN ('queued', 'leased', 'paused')",
        )?
        .query_map([sweep_id], |r| r.get(0))?
        .collect::<Result<_, _>>()?)
}

/// The scores TPE is told (lower is better) and the rung they were read at: each point's seed
/// mean at the deepest rung that enough points reached with every live seed.
#[allow(clippy::type_complexity)]
fn told(
    tx: &Transaction<'_>,
    sweep_id: &str,
    spec: &SweepSpec,
    settings: &StopSettings,
    points: &[Point],
) -> Result<(Vec<(u32, f64)>, Option<u32>), Error> {
    let max_epochs = spec
        .trials_of(points.first().unwrap_or(&Vec::new()))
        .first()
        .map_or(1, |t| t.max_epochs);
    let rungs = if settings.judges() {
        stopping::rungs(settings.min_epochs, settings.eta, max_epochs)
    } else {
        vec![max_epochs]
    };
    // Live seeds per point, and each seed's metric at each rung (its latest attempt's).
    let mut seeds: BTreeMap<u32, u32> = BTreeMap::new();
    for row in tx
        .prepare_cached(
            "SELECT s.point, COUNT(*) FROM sweep_jobs s JOIN jobs j ON j.id = s.job_id
             WHERE s.sweep_id = ?1 AND j.state != 'failed' GROUP BY s.point",
        )?
        .query_map([sweep_id], |r| {
            Ok((r.get::<_, u32>(0)?, r.get::<_, u32>(1)?))
        })?
    {
        let (p, n) = row?;
        seeds.insert(p, n);
    }
    let rungs_json = serde_json::to_string(&rungs).expect("numbers serialise");
    let mut values: BTreeMap<(u32, u32), Vec<f64>> = BTreeMap::new();
    let mut last: Option<(String, u32)> = None;
    let mut stmt = tx.prepare_cached(
        "SELECT s.point, j.id, e.epoch, e.metrics_json
         FROM sweep_jobs s JOIN jobs j ON j.id = s.job_id
              JOIN attempts a ON a.job_id = j.id JOIN epochs e ON e.lease_id = a.lease_id
         WHERE s.sweep_id = ?1 AND j.state != 'failed' AND e.epoch IN (SELECT value FROM json_each(?2))
         ORDER BY j.id, e.epoch, a.attempt DESC",
    )?;
    let mut rows = stmt.query(params![sweep_id, rungs_json])?;
    while let Some(r) = rows.next()? {
        let (point, job, epoch): (u32, String, u32) = (r.get(0)?, r.get(1)?, r.get(2)?);
        // The latest attempt's epoch only.
        if last.as_ref().is_some_and(|(j, e)| *j == job && *e == epoch) {
            continue;
        }
        let json: String = r.get(3)?;
        let m: EpochMetrics = serde_json::from_str(&json)
            .map_err(|e| Error::Corrupt(format!("job {job} epoch {epoch}: {e}")))?;
        // Lower is better for TPE: accuracies are negated.
        let metric = spec.search.metric;
        let score = match metric {
            Metric::ValLoss => metric.read(&m),
            Metric::ValAcc => -metric.read(&m),
        };
        values.entry((epoch, point)).or_default().push(score);
        last = Some((job, epoch));
    }
    // Complete points per rung.
    let mut by_rung: BTreeMap<u32, Vec<(u32, f64)>> = BTreeMap::new();
    for ((rung, point), v) in values {
        if seeds.get(&point) == Some(&(v.len() as u32)) {
            let mean = v.iter().sum::<f64>() / v.len() as f64;
            by_rung.entry(rung).or_default().push((point, mean));
        }
    }
    let deepest_enough = by_rung
        .iter()
        .rev()
        .find(|(_, told)| told.len() >= tpe::STARTUP)
        .or_else(|| by_rung.iter().max_by_key(|(r, told)| (told.len(), **r)));
    Ok(match deepest_enough {
        Some((rung, told)) => (told.clone(), Some(*rung)),
        None => (Vec::new(), None),
    })
}
