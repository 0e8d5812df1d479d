//! Asynchronous early stopping in the store: promotion-based ASHA (`rule = "halving"`,
//! `mode = "async"`) and the median rule. A point *arrives* at a rung when every live seed of it
//! has reported that epoch; its arrival is a row (`arrivals`) with its score (the seed mean) and
//! what was decided for it, written in the transaction of the report that completed it.
//!
//! - ASHA: a seed reaching a rung its point has not been promoted past pauses there (its lane
//!   leaves its pack; its state, saved with the report, stays). Each arrival promotes the paused
//!   points in the top ⌊n/eta⌋ of the n recorded at that rung of the cohort (none before eta have
//!   arrived); a promoted point's paused jobs are queued again at their old place and resume from
//!   their checkpoint. When the sweep has nothing left queued or running, the top ⌈n/eta⌉ are
//!   promotable (so every cohort sends a point on); once none is, the paused points stop there.
//! - Median: an arriving point stops when its score is worse than the median of the other points
//!   recorded at that rung ([`stopping::median_stops`]); nothing pauses.

use rusqlite::{OptionalExtension, Transaction, params};

use super::Millis;
use super::cancel::{cancel_job, cancelled_everywhere};
use super::halving::{StopSettings, cohort_sql, finite, seed_metric_at};
use super::lease::Held;
use crate::Error;
use crate::stopping::{self, Score};
use crate::store::{exec, one};
use crate::sweep::search::Metric;

/// What an asynchronous rule asks of the job that just reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Train on.
    Go,
    /// Pause at this rung (its point is not promoted past it).
    Pause(u32),
    /// Its point was stopped (the median rule).
    Stopped,
}

/// The rungs at which points are judged: every one but the last (the end of training).
fn judged_rungs(settings: &StopSettings, max_epochs: u32) -> Vec<u32> {
    let mut rungs = stopping::rungs(settings.min_epochs, settings.eta, max_epochs);
    rungs.pop();
    rungs
}

/// Records the arrivals that the job's epochs up to `last_epoch` complete (judging each), and says
/// whether the job goes on.
pub(super) fn after_epochs(
    tx: &Transaction<'_>,
    sweep_id: &str,
    settings: &StopSettings,
    job_id: &str,
    max_epochs: u32,
    last_epoch: u32,
    now: Millis,
) -> Result<Verdict, Error> {
    let Some((point, cohort)) = point_of(tx, sweep_id, settings, job_id)? else {
        return Ok(Verdict::Go);
    };
    let rungs = judged_rungs(settings, max_epochs);
    for &rung in rungs.iter().filter(|&&r| r <= last_epoch) {
        if action_at(tx, sweep_id, rung, point)?.is_some() {
            continue;
        }
        let Some(score) = point_score(tx, sweep_id, settings.metric(), point, rung)? else {
            // Some seed is not there yet (later rungs cannot be complete either).
            break;
        };
        if arrive(tx, sweep_id, settings, &cohort, rung, score, now)? {
            // Stopped by the median rule: nothing more to judge.
            return Ok(Verdict::Stopped);
        }
    }
    if !settings.is_async_halving() {
        return Ok(Verdict::Go);
    }
    for &rung in rungs.iter().filter(|&&r| r <= last_epoch) {
        if action_at(tx, sweep_id, rung, point)?.as_deref() != Some("promoted") {
            return Ok(Verdict::Pause(rung));
        }
    }
    Ok(Verdict::Go)
}

/// A seed of the point failed for good: the others may now complete rungs without it. Then, for
/// ASHA, the sweep may have nothing left to run.
pub(super) fn after_failure(
    tx: &Transaction<'_>,
    sweep_id: &str,
    settings: &StopSettings,
    job_id: &str,
    max_epochs: u32,
    now: Millis,
) -> Result<(), Error> {
    after_epochs(tx, sweep_id, settings, job_id, max_epochs, max_epochs, now)?;
    when_idle(tx, sweep_id, settings, now)
}

/// The job's point in the sweep and its cohort (None: not the sweep's).
fn point_of(
    tx: &Transaction<'_>,
    sweep_id: &str,
    settings: &StopSettings,
    job_id: &str,
) -> Result<Option<(u32, String)>, Error> {
    let cohort = cohort_sql(&settings.stratify);
    Ok(tx
        .prepare_cached(&format!(
            "SELECT s.point, {cohort} FROM sweep_jobs s JOIN jobs j ON j.id = s.job_id
             WHERE s.sweep_id = ?1 AND s.job_id = ?2"
        ))?
        .query_row([sweep_id, job_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

/// What was decided for the point at the rung, if it arrived there.
fn action_at(
    tx: &Transaction<'_>,
    sweep_id: &str,
    rung: u32,
    point: u32,
) -> Result<Option<String>, Error> {
    Ok(tx
        .prepare_cached(
            "SELECT action FROM arrivals WHERE sweep_id = ?1 AND rung = ?2 AND point = ?3",
        )?
        .query_row(params![sweep_id, rung, point], |r| r.get(0))
        .optional()?)
}

/// The point's score at the rung, if every seed that has not failed for good reported it (None
/// also when no seed is left).
fn point_score(
    tx: &Transaction<'_>,
    sweep_id: &str,
    metric: Metric,
    point: u32,
    rung: u32,
) -> Result<Option<Score>, Error> {
    let seeds: Vec<String> = tx
        .prepare_cached(
            "SELECT j.id FROM sweep_jobs s JOIN jobs j ON j.id = s.job_id
             WHERE s.sweep_id = ?1 AND s.point = ?2 AND j.state != 'failed' ORDER BY s.position",
        )?
        .query_map(params![sweep_id, point], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut values = Vec::with_capacity(seeds.len());
    for job in &seeds {
        let Some(value) = seed_metric_at(tx, job, rung, metric)? else {
            return Ok(None);
        };
        values.push(value);
    }
    Ok((!values.is_empty()).then(|| Score::of(point, &values)))
}

/// The points recorded at a rung of a cohort, with what was decided for each.
fn recorded(
    tx: &Transaction<'_>,
    sweep_id: &str,
    cohort: &str,
    rung: u32,
) -> Result<Vec<(Score, String)>, Error> {
    Ok(tx
        .prepare_cached(
            "SELECT point, mean, std, seeds, action FROM arrivals
             WHERE sweep_id = ?1 AND cohort = ?2 AND rung = ?3",
        )?
        .query_map(params![sweep_id, cohort, rung], |r| {
            Ok((
                Score {
                    point: r.get(0)?,
                    mean: r.get::<_, Option<f64>>(1)?.unwrap_or(f64::NAN),
                    std: r.get::<_, Option<f64>>(2)?.unwrap_or(f64::NAN),
                    seeds: r.get(3)?,
                },
                r.get(4)?,
            ))
        })?
        .collect::<Result<_, _>>()?)
}

/// Records a point's arrival at a rung and judges it; says whether the point was stopped.
fn arrive(
    tx: &Transaction<'_>,
    sweep_id: &str,
    settings: &StopSettings,
    cohort: &str,
    rung: u32,
    score: Score,
    now: Millis,
) -> Result<bool, Error> {
    let metric = settings.metric();
    let others = recorded(tx, sweep_id, cohort, rung)?;
    let (action, cutoff) = if settings.rule == "median" {
        let scores: Vec<Score> = others.iter().map(|(s, _)| *s).collect();
        match stopping::median_stops(metric, &score, &scores) {
            Some(true) => ("stopped", stopping::median(metric, &scores)),
            Some(false) => ("continued", stopping::median(metric, &scores)),
            None => ("continued", None),
        }
    } else {
        ("paused", None)
    };
    exec(
        tx,
        "INSERT INTO arrivals (sweep_id, rung, point, cohort, arrived_ms, mean, std, seeds, action, decided_ms, cutoff, among)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?5, ?10, ?11)",
        params![
            sweep_id,
            rung,
            score.point,
            cohort,
            now,
            finite(score.mean),
            finite(score.std),
            score.seeds,
            action,
            cutoff.and_then(finite),
            others.len() as u32 + 1
        ],
    )?;
    tracing::info!(sweep = %sweep_id, rung, point = score.point, cohort, score = score.mean, action, "point arrived at a rung");
    match action {
        "stopped" => {
            stop_point(tx, sweep_id, score.point, rung, now)?;
            Ok(true)
        }
        "paused" => {
            promote_at(tx, sweep_id, metric, settings.eta, cohort, rung, false, now)?;
            Ok(false)
        }
        _ => Ok(false),
    }
}

/// Promotes the paused points of a rung that rank in its top ⌊n/eta⌋ (⌈n/eta⌉ `at_end`): their
/// paused jobs are queued again at their old place, to resume from their saved state. Returns how
/// many points were promoted and how many jobs that queued (a point whose seeds all finished past
/// the rung, their last epochs carried by the result, is promoted with nothing to resume).
#[allow(clippy::too_many_arguments)]
fn promote_at(
    tx: &Transaction<'_>,
    sweep_id: &str,
    metric: Metric,
    eta: u32,
    cohort: &str,
    rung: u32,
    at_end: bool,
    now: Millis,
) -> Result<(usize, usize), Error> {
    let recorded = recorded(tx, sweep_id, cohort, rung)?;
    let scores: Vec<Score> = recorded.iter().map(|(s, _)| *s).collect();
    // Only paused points can be promoted: the others went on already or were stopped.
    let not_paused: Vec<u32> = recorded
        .iter()
        .filter(|(_, action)| action != "paused")
        .map(|(s, _)| s.point)
        .collect();
    let promoted = stopping::promote(metric, eta, &scores, &not_paused, at_end);
    let cutoff = promoted
        .last()
        .and_then(|p| scores.iter().find(|s| s.point == *p))
        .map(|s| s.mean);
    let mut queued = 0;
    for &point in &promoted {
        exec(
            tx,
            "UPDATE arrivals SET action = 'promoted', decided_ms = ?4, cutoff = ?5, among = ?6
             WHERE sweep_id = ?1 AND rung = ?2 AND point = ?3",
            params![
                sweep_id,
                rung,
                point,
                now,
                cutoff.and_then(finite),
                scores.len() as u32
            ],
        )?;
        // `queued_seq = queued_seq`: a promoted job keeps its place, and the write of the column
        // marks its sweep active again (migration 27's trigger).
        let resumed = exec(
            tx,
            "UPDATE jobs SET state = 'queued', queued_seq = queued_seq, error = NULL, updated_ms = ?3
             WHERE state = 'paused' AND id IN (SELECT job_id FROM sweep_jobs WHERE sweep_id = ?1 AND point = ?2)",
            params![sweep_id, point, now],
        )?;
        tracing::info!(sweep = %sweep_id, rung, point, resumed, at_end, "point promoted");
        queued += resumed;
    }
    Ok((promoted.len(), queued))
}

/// Stops a point at a rung: each of its jobs no other live sweep wants ends now if it waits
/// (queued or paused), at its next report if it runs.
fn stop_point(
    tx: &Transaction<'_>,
    sweep_id: &str,
    point: u32,
    rung: u32,
    now: Millis,
) -> Result<(), Error> {
    let jobs: Vec<(String, String)> = tx
        .prepare_cached(
            "SELECT j.id, j.state FROM sweep_jobs s JOIN jobs j ON j.id = s.job_id
             WHERE s.sweep_id = ?1 AND s.point = ?2 AND s.stopped_epoch IS NULL",
        )?
        .query_map(params![sweep_id, point], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for (job, state) in jobs {
        exec(
            tx,
            "UPDATE sweep_jobs SET stopped_epoch = ?3 WHERE sweep_id = ?1 AND job_id = ?2",
            params![sweep_id, job, rung],
        )?;
        if (state == "queued" || state == "paused") && cancelled_everywhere(tx, &job)? {
            cancel_job(tx, &job, None, now)?;
        }
    }
    Ok(())
}

/// Pauses the held job at `rung` of `sweep_id` (ASHA, or a sync rung not decided yet), unless
/// another live sweep wants it trained on;
/// says whether it paused. The attempt ends (not counted as a failure); the saved state stays.
pub(super) fn pause(
    tx: &Transaction<'_>,
    held: &Held,
    sweep_id: &str,
    rung: u32,
    now: Millis,
) -> Result<bool, Error> {
    let wanted_elsewhere: bool = one(
        tx,
        "SELECT EXISTS (SELECT 1 FROM sweep_jobs s JOIN sweeps w ON w.id = s.sweep_id
             WHERE s.job_id = ?1 AND s.sweep_id != ?2 AND w.cancel_requested = 0 AND s.stopped_epoch IS NULL)",
        [&held.job_id, sweep_id],
        |r| r.get(0),
    )?;
    if wanted_elsewhere {
        return Ok(false);
    }
    exec(
        tx,
        "UPDATE attempts SET ended_ms = ?2, outcome = 'paused' WHERE lease_id = ?1",
        params![held.lease_id, now],
    )?;
    exec(
        tx,
        "UPDATE jobs SET state = 'paused', max_attempts = max_attempts + 1, lease_id = NULL, worker_id = NULL,
             lease_expires_ms = NULL, counted = 0, updated_ms = ?2,
             error = 'paused at epoch ' || ?3 || ': waiting for successive halving to judge its point'
         WHERE id = ?1",
        params![held.job_id, now, rung],
    )?;
    tracing::info!(job = %held.job_id, lease = %held.lease_id, sweep = %sweep_id, rung, "job paused at a rung");
    Ok(true)
}

/// When an ASHA sweep has nothing queued or running: promotes what ⌈n/eta⌉ allows at each rung
/// (lowest first) until a promotion queues a job; if nothing promotable has a job to resume, the
/// paused points stop where they are. (A promotion may queue nothing: a point whose seeds ended
/// past the rung, their last epochs carried by the result, arrives there paused with none of its
/// jobs paused. Stopping at such a promotion left the sweep waiting for ever.)
pub(super) fn when_idle(
    tx: &Transaction<'_>,
    sweep_id: &str,
    settings: &StopSettings,
    now: Millis,
) -> Result<(), Error> {
    if !settings.is_async_halving() {
        return Ok(());
    }
    let busy: bool = one(
        tx,
        "SELECT EXISTS (SELECT 1 FROM sweep_jobs s JOIN jobs j ON j.id = s.job_id
             WHERE s.sweep_id = ?1 AND s.stopped_epoch IS NULL AND j.state IN ('queued', 'leased'))",
        [sweep_id],
        |r| r.get(0),
    )?;
    if busy {
        return Ok(());
    }
    let waiting: Vec<(String, u32)> = tx
        .prepare_cached(
            "SELECT DISTINCT cohort, rung FROM arrivals WHERE sweep_id = ?1 AND action = 'paused' ORDER BY rung, cohort",
        )?
        .query_map([sweep_id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    loop {
        let (mut promoted, mut queued) = (0, 0);
        for (cohort, rung) in &waiting {
            let (points, jobs) = promote_at(
                tx,
                sweep_id,
                settings.metric(),
                settings.eta,
                cohort,
                *rung,
                true,
                now,
            )?;
            promoted += points;
            queued += jobs;
        }
        if queued > 0 {
            return Ok(());
        }
        if promoted == 0 {
            break;
        }
        // Each round turns at least one arrival from paused to promoted: the loop ends.
    }
    // Nothing more will arrive: the paused points stop at their rung.
    let paused: Vec<(u32, u32)> = tx
        .prepare_cached(
            "SELECT point, MIN(rung) FROM arrivals WHERE sweep_id = ?1 AND action = 'paused' GROUP BY point",
        )?
        .query_map([sweep_id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for (point, rung) in paused {
        exec(
            tx,
            "UPDATE arrivals SET action = 'stopped', decided_ms = ?3 WHERE sweep_id = ?1 AND point = ?2 AND action = 'paused'",
            params![sweep_id, point, now],
        )?;
        stop_point(tx, sweep_id, point, rung, now)?;
    }
    // A paused job whose point never arrived (cannot happen while every seed reports; kept so no
    // job waits for ever): it stops at the epoch it reached.
    let strays: Vec<(String, u32)> = tx
        .prepare_cached(
            "SELECT j.id, j.epochs_done FROM sweep_jobs s JOIN jobs j ON j.id = s.job_id
             WHERE s.sweep_id = ?1 AND j.state = 'paused' AND s.stopped_epoch IS NULL",
        )?
        .query_map([sweep_id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for (job, epoch) in strays {
        exec(
            tx,
            "UPDATE sweep_jobs SET stopped_epoch = ?3 WHERE sweep_id = ?1 AND job_id = ?2",
            params![sweep_id, job, epoch],
        )?;
        if cancelled_everywhere(tx, &job)? {
            cancel_job(tx, &job, None, now)?;
        }
    }
    Ok(())
}
