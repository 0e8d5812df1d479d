//! Early stopping in the store. After a report stores epochs, each sweep of the job that stops
//! early judges them: asynchronous rules (ASHA, the median rule) in [`super::arrivals`]; sync
//! successive halving (`rule = "halving"`, `mode = "sync"`) here: it checks whether the job's cohort has
//! reached a rung; the first report that completes it makes the decision ([`crate::stopping::halve`]
//! on the seed means), in the same transaction. The decision is a row keyed by (sweep, rung,
//! cohort), so a retried report or a restarted coordinator can never decide twice, and a decision
//! committed is never lost. Stopped points' jobs end like a cancelled sweep's: queued ones at once,
//! running ones at their worker's next report or heartbeat (the lane leaves its pack, its
//! pack-mates go on).

use std::collections::BTreeMap;

use rusqlite::{OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};

use super::Millis;
use super::cancel::{cancel_job, cancelled_everywhere};
use super::{arrivals, suggest};
use crate::Error;
use crate::stopping::{self, Score};
use crate::store::exec;
use crate::sweep::search::{Metric, Mode, Rule, Search};
use jetsweep_proto::metrics::EpochMetrics;

/// A sweep's stopping settings, as stored on its row (`sweeps.stop_json`). The default is a
/// sweep that does not stop early (rule `none`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StopSettings {
    pub min_epochs: u32,
    pub eta: u32,
    /// `val_loss` or `val_acc`.
    pub metric: String,
    /// Keys whose values are compared only among themselves (besides `max_epochs`, always).
    pub stratify: Vec<String>,
    /// `halving` or `median` (sweeps stored before the median rule are all `halving`).
    #[serde(default = "halving")]
    pub rule: String,
    /// `sync` or `async` (halving's mode; the median rule is judged on arrival).
    #[serde(default = "sync")]
    pub mode: String,
    /// The search suggests points by TPE as earlier ones settle ([`super::suggest`]).
    #[serde(default)]
    pub tpe: bool,
}

impl Default for StopSettings {
    fn default() -> Self {
        StopSettings {
            min_epochs: 0,
            eta: 0,
            metric: String::new(),
            stratify: Vec::new(),
            rule: "none".to_string(),
            mode: String::new(),
            tpe: false,
        }
    }
}

fn halving() -> String {
    "halving".to_string()
}

fn sync() -> String {
    "sync".to_string()
}

impl StopSettings {
    /// The settings to store for a search that stops early or suggests points (None: a search
    /// that does neither).
    pub fn of(search: &Search) -> Option<StopSettings> {
        let stop = &search.stop;
        let rule = match stop.rule {
            Rule::None if !search.is_tpe() => return None,
            Rule::None => "none",
            Rule::Halving => "halving",
            Rule::Median => "median",
        };
        Some(StopSettings {
            min_epochs: stop.min_epochs,
            eta: stop.eta,
            metric: search.metric.as_str().to_string(),
            stratify: stop.stratify.clone(),
            rule: rule.to_string(),
            mode: match stop.mode {
                Mode::Sync => "sync",
                Mode::Async => "async",
            }
            .to_string(),
            tpe: search.is_tpe(),
        })
    }

    /// Some rule judges points at rungs.
    pub(super) fn judges(&self) -> bool {
        self.rule != "none"
    }

    /// The settings stored on `sweep_id`'s row.
    fn parse(sweep_id: &str, json: &str) -> Result<StopSettings, Error> {
        serde_json::from_str(json)
            .map_err(|e| Error::Corrupt(format!("sweep {sweep_id} stop settings: {e}")))
    }

    /// Synchronous successive halving: rungs decided whole, the same on every rerun.
    fn is_sync_halving(&self) -> bool {
        self.rule == "halving" && self.mode == "sync"
    }

    /// Promotion-based ASHA: points pause at rungs until promoted.
    pub(super) fn is_async_halving(&self) -> bool {
        self.rule == "halving" && self.mode == "async"
    }

    pub(super) fn metric(&self) -> Metric {
        if self.metric == "val_acc" {
            Metric::ValAcc
        } else {
            Metric::ValLoss
        }
    }
}

/// One job of a sweep as halving sees it.
struct Member {
    job_id: String,
    point: u32,
    cohort: String,
    /// The sweep stopped its point already.
    stopped: bool,
    /// Failed for good: its seed drops out of its point's mean.
    failed: bool,
}

/// What the early-stopping rules made of a job's report.
#[derive(Debug, Default)]
pub(super) struct Judged {
    /// Some synchronous rung was decided (the job's own point may have been stopped).
    pub decided: bool,
    /// The median rule stopped the job's point.
    pub stopped: bool,
    /// An ASHA sweep pauses the job at a rung: (sweep, rung).
    pub pause: Option<(String, u32)>,
}

/// Judges what `epochs` (just stored for `job_id`) complete, in each sweep of the job that stops
/// early: synchronous rungs decided, arrivals at asynchronous rungs recorded.
pub(super) fn after_report(
    tx: &Transaction<'_>,
    job_id: &str,
    max_epochs: u32,
    epochs: &[EpochMetrics],
    now: Millis,
) -> Result<Judged, Error> {
    let mut judged = Judged::default();
    let Some(last) = epochs.iter().map(|m| m.epoch).max() else {
        return Ok(judged);
    };
    for (sweep_id, settings) in stopping_sweeps(tx, job_id)? {
        if !settings.judges() {
            continue;
        }
        if settings.is_sync_halving() {
            let touched = |rung| epochs.iter().any(|m| m.epoch == rung);
            judged.decided |=
                decide_rungs(tx, &sweep_id, &settings, job_id, max_epochs, touched, now)?;
            // A seed past a rung its cohort has not decided waits there (its lane goes back),
            // so points do not train on past a rung that may stop them.
            if let Some(rung) = undecided_rung(tx, &sweep_id, &settings, job_id, max_epochs, last)?
            {
                judged.pause.get_or_insert((sweep_id, rung));
            }
        } else {
            match arrivals::after_epochs(tx, &sweep_id, &settings, job_id, max_epochs, last, now)? {
                arrivals::Verdict::Go => {}
                arrivals::Verdict::Stopped => judged.stopped = true,
                arrivals::Verdict::Pause(rung) => {
                    judged.pause.get_or_insert((sweep_id, rung));
                }
            }
        }
    }
    Ok(judged)
}

/// Judges what a job failing for good may complete (its seed no longer counts).
pub(super) fn after_failure(
    tx: &Transaction<'_>,
    job_id: &str,
    max_epochs: u32,
    now: Millis,
) -> Result<(), Error> {
    for (sweep_id, settings) in stopping_sweeps(tx, job_id)? {
        if settings.is_sync_halving() {
            decide_rungs(tx, &sweep_id, &settings, job_id, max_epochs, |_| true, now)?;
        } else if settings.judges() {
            arrivals::after_failure(tx, &sweep_id, &settings, job_id, max_epochs, now)?;
        }
        if settings.tpe {
            suggest::refill(tx, &sweep_id, &settings, now)?;
        }
    }
    Ok(())
}

/// A job of an ASHA sweep ended, paused or was cancelled: the sweep may have nothing left but
/// paused points.
pub(super) fn after_end(tx: &Transaction<'_>, job_id: &str, now: Millis) -> Result<(), Error> {
    for (sweep_id, settings) in sweeps_of(tx, job_id, true)? {
        arrivals::when_idle(tx, &sweep_id, &settings, now)?;
        if settings.tpe {
            suggest::refill(tx, &sweep_id, &settings, now)?;
        }
    }
    Ok(())
}

/// A sweep just submitted may reuse jobs that already reported its rungs' epochs (done, or stopped
/// by an earlier sweep of the same cells): no report will carry those epochs again, so each
/// cohort's rungs are judged now, in the submit's transaction. A rung every point has reached is
/// decided (sync) or its points arrive (async); stopped points' queued jobs end at once.
pub(super) fn after_submit(tx: &Transaction<'_>, sweep_id: &str, now: Millis) -> Result<(), Error> {
    let Some(settings) = stop_settings(tx, sweep_id)?.filter(StopSettings::judges) else {
        return Ok(());
    };
    // The jobs that reported something before this sweep, one per point, with their last epoch.
    let reported: Vec<(String, u32, u32)> = tx
        .prepare(
            "SELECT s.job_id, j.max_epochs, MAX(e.epoch) FROM sweep_jobs s JOIN jobs j ON j.id = s.job_id
               JOIN attempts a ON a.job_id = j.id JOIN epochs e ON e.lease_id = a.lease_id
             WHERE s.sweep_id = ?1 GROUP BY s.point ORDER BY s.point",
        )?
        .query_map([sweep_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    for (job_id, max_epochs, last) in reported {
        if settings.is_sync_halving() {
            decide_rungs(
                tx,
                sweep_id,
                &settings,
                &job_id,
                max_epochs,
                |r| r <= last,
                now,
            )?;
        } else {
            arrivals::after_epochs(tx, sweep_id, &settings, &job_id, max_epochs, last, now)?;
        }
    }
    Ok(())
}

/// The live sweeps of the job that stop early and have not stopped its point, with their settings.
fn stopping_sweeps(
    tx: &Transaction<'_>,
    job_id: &str,
) -> Result<Vec<(String, StopSettings)>, Error> {
    sweeps_of(tx, job_id, false)
}

/// The live sweeps of the job that stop early (with `stopped`, also those that stopped its point).
fn sweeps_of(
    tx: &Transaction<'_>,
    job_id: &str,
    stopped: bool,
) -> Result<Vec<(String, StopSettings)>, Error> {
    // Most stores have no sweep that stops early: one look at a partial index spares every report
    // of every other sweep the join below.
    let any: bool = tx
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM sweeps WHERE stop_json IS NOT NULL AND cancel_requested = 0)",
        )?
        .query_row([], |r| r.get(0))?;
    if !any {
        return Ok(Vec::new());
    }
    let sweeps: Vec<(String, String)> = tx
        .prepare_cached(
            "SELECT w.id, w.stop_json FROM sweep_jobs s JOIN sweeps w ON w.id = s.sweep_id
             WHERE s.job_id = ?1 AND w.stop_json IS NOT NULL AND w.cancel_requested = 0 AND (?2 OR s.stopped_epoch IS NULL)",
        )?
        .query_map(params![job_id, stopped], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    sweeps
        .into_iter()
        .map(|(sweep_id, json)| {
            let settings = StopSettings::parse(&sweep_id, &json)?;
            Ok((sweep_id, settings))
        })
        .collect()
}

/// A sweep's stopping settings (None: it neither stops early nor suggests). Errors: NotFound.
pub(super) fn stop_settings(
    tx: &Transaction<'_>,
    sweep_id: &str,
) -> Result<Option<StopSettings>, Error> {
    let json: Option<String> = tx
        .prepare_cached("SELECT stop_json FROM sweeps WHERE id = ?1")?
        .query_row([sweep_id], |r| r.get(0))
        .optional()?
        .ok_or_else(|| Error::NotFound(format!("sweep {sweep_id:?}")))?;
    json.map(|json| StopSettings::parse(sweep_id, &json))
        .transpose()
}

/// Tries each rung of a sync halving sweep that `touched` names; says whether any was decided.
fn decide_rungs(
    tx: &Transaction<'_>,
    sweep_id: &str,
    settings: &StopSettings,
    job_id: &str,
    max_epochs: u32,
    touched: impl Fn(u32) -> bool,
    now: Millis,
) -> Result<bool, Error> {
    let rungs = stopping::rungs(settings.min_epochs, settings.eta, max_epochs);
    // The last rung is the end of training: nothing is left to stop. A decision may complete
    // the next rung at once (its kept points already reported it, or finished): try it too.
    let mut decided = false;
    let mut any_decided = false;
    for &rung in &rungs[..rungs.len() - 1] {
        if touched(rung) || decided {
            decided = decide(tx, sweep_id, settings, job_id, rung, now)?;
            any_decided |= decided;
        }
    }
    Ok(any_decided)
}

/// The cohort of a job: its `max_epochs` (rungs differ by it) and the stratified keys' values.
pub(super) fn cohort_sql(stratify: &[String]) -> String {
    let mut parts = vec!["CAST(j.max_epochs AS TEXT)".to_string()];
    for key in stratify {
        let column = match key.as_str() {
            "model" => "j.model",
            "optimizer" => "j.optimizer",
            "batch_size" => "j.batch_size",
            "learning_rate" => "j.learning_rate",
            "weight_decay" => "j.weight_decay",
            _ => continue,
        };
        parts.push(column.to_string());
    }
    parts.join(" || '|' || ")
}

/// Decides rung `epoch` for the cohort of `job_id` in `sweep_id`, if every live point of the
/// cohort has all its seeds there and it was not decided before; says whether it decided now.
fn decide(
    tx: &Transaction<'_>,
    sweep_id: &str,
    settings: &StopSettings,
    job_id: &str,
    epoch: u32,
    now: Millis,
) -> Result<bool, Error> {
    let cohort = cohort_sql(&settings.stratify);
    let own_cohort: String = tx
        .prepare_cached(&format!("SELECT {cohort} FROM jobs j WHERE j.id = ?1"))?
        .query_row([job_id], |r| r.get(0))?;
    let decided: bool = tx
        .prepare_cached(
            "SELECT 1 FROM decisions WHERE sweep_id = ?1 AND rung = ?2 AND cohort = ?3",
        )?
        .exists(params![sweep_id, epoch, own_cohort])?;
    if decided {
        return Ok(false);
    }
    let members: Vec<Member> = tx
        .prepare(&format!(
            "SELECT j.id, s.point, {cohort}, s.stopped_epoch IS NOT NULL, j.state = 'failed'
             FROM sweep_jobs s JOIN jobs j ON j.id = s.job_id WHERE s.sweep_id = ?1 ORDER BY s.position"
        ))?
        .query_map([sweep_id], |r| {
            Ok(Member {
                job_id: r.get(0)?,
                point: r.get(1)?,
                cohort: r.get(2)?,
                stopped: r.get(3)?,
                failed: r.get(4)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    let metric = settings.metric();
    // Each live point's seeds' values at the rung; any seed still short of it means: not yet.
    let mut points: BTreeMap<u32, Vec<f64>> = BTreeMap::new();
    for m in members
        .iter()
        .filter(|m| m.cohort == own_cohort && !m.stopped)
    {
        let values = points.entry(m.point).or_default();
        if m.failed {
            continue;
        }
        let Some(value) = seed_metric_at(tx, &m.job_id, epoch, metric)? else {
            return Ok(false);
        };
        values.push(value);
    }
    let scores: Vec<Score> = points
        .iter()
        .filter(|(_, values)| !values.is_empty())
        .map(|(&point, values)| Score::of(point, values))
        .collect();
    let decision = stopping::halve(metric, settings.eta, &scores);
    let scores_json = serde_json::to_string(
        &decision
            .ranked
            .iter()
            .map(|s| serde_json::json!({"point": s.point, "mean": finite(s.mean), "std": finite(s.std), "seeds": s.seeds}))
            .collect::<Vec<_>>(),
    )
    .expect("scores serialise");
    exec(
        tx,
        "INSERT INTO decisions (sweep_id, rung, cohort, decided_ms, metric, eta, scores_json, cutoff, kept_json, stopped_json)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            sweep_id,
            epoch,
            own_cohort,
            now,
            settings.metric,
            settings.eta,
            scores_json,
            decision.cutoff.filter(|c| c.is_finite()),
            serde_json::to_string(&decision.kept).expect("points serialise"),
            serde_json::to_string(&decision.stopped).expect("points serialise"),
        ],
    )?;
    tracing::info!(
        sweep = %sweep_id,
        rung = epoch,
        cohort = %own_cohort,
        kept = decision.kept.len(),
        stopped = decision.stopped.len(),
        "halving decided a rung"
    );
    // Points with no seed left (all failed) are neither kept nor stopped: nothing runs for them.
    for m in members
        .iter()
        .filter(|m| m.cohort == own_cohort && !m.stopped && decision.stopped.contains(&m.point))
    {
        exec(
            tx,
            "UPDATE sweep_jobs SET stopped_epoch = ?3 WHERE sweep_id = ?1 AND job_id = ?2",
            params![sweep_id, m.job_id, epoch],
        )?;
        let waiting: bool = tx
            .prepare_cached("SELECT state IN ('queued', 'paused') FROM jobs WHERE id = ?1")?
            .query_row([&m.job_id], |r| r.get(0))?;
        if waiting && cancelled_everywhere(tx, &m.job_id)? {
            cancel_job(tx, &m.job_id, None, now)?;
        }
    }
    // Kept points' seeds that paused at this rung resume from their saved state, at their old
    // place in the queue.
    for m in members
        .iter()
        .filter(|m| m.cohort == own_cohort && !m.stopped && decision.kept.contains(&m.point))
    {
        // It keeps its place; writing the column marks its sweep active (migration 27).
        exec(
            tx,
            "UPDATE jobs SET state = 'queued', queued_seq = queued_seq, error = NULL, updated_ms = ?2 WHERE id = ?1 AND state = 'paused'",
            params![m.job_id, now],
        )?;
    }
    Ok(true)
}

/// The rung a sync halving sweep's job waits at: the lowest below its last epoch that its cohort
/// has not decided yet (None: every rung it passed is decided, and its point was kept).
fn undecided_rung(
    tx: &Transaction<'_>,
    sweep_id: &str,
    settings: &StopSettings,
    job_id: &str,
    max_epochs: u32,
    last_epoch: u32,
) -> Result<Option<u32>, Error> {
    let rungs = stopping::rungs(settings.min_epochs, settings.eta, max_epochs);
    let passed: Vec<u32> = rungs[..rungs.len() - 1]
        .iter()
        .copied()
        .filter(|&r| r <= last_epoch)
        .collect();
    if passed.is_empty() {
        return Ok(None);
    }
    let cohort = cohort_sql(&settings.stratify);
    let own_cohort: String = tx
        .prepare_cached(&format!("SELECT {cohort} FROM jobs j WHERE j.id = ?1"))?
        .query_row([job_id], |r| r.get(0))?;
    let mut decided = tx.prepare_cached(
        "SELECT 1 FROM decisions WHERE sweep_id = ?1 AND rung = ?2 AND cohort = ?3",
    )?;
    for rung in passed {
        if !decided.exists(params![sweep_id, rung, own_cohort])? {
            return Ok(Some(rung));
        }
    }
    Ok(None)
}

/// A seed's metric at `epoch`, as its latest attempt that reached the epoch reported it (None:
/// not reported yet).
pub(super) fn seed_metric_at(
    tx: &Transaction<'_>,
    job_id: &str,
    epoch: u32,
    metric: Metric,
) -> Result<Option<f64>, Error> {
    Ok(super::models::epoch_metrics(tx, job_id, epoch)?.map(|m| metric.read(&m)))
}

/// A number for JSON and the store (NaN and infinities are not JSON numbers; NaN is stored as
/// NULL and read back as NaN).
pub(super) fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}
