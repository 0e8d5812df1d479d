//! The coordinator's records as wire messages. Glue only: the shared vocabulary converts itself
//! (`jetsweep_proto::convert`); this adds what only the coordinator has (sweeps, jobs, leases,
//! result rows).

use jetsweep_proto::convert::trial_to_wire;
use jetsweep_proto::v1 as pb;

use crate::jobs::{DecisionRow, Job, JobState, LeaseGrant, SweepCounts};
use crate::results::{ResultRow, Spread};
use crate::server::results_cache::Aggregated;
use jetsweep_proto::worker_id::worker_name;

pub fn sweep(c: &SweepCounts) -> pb::SweepView {
    pb::SweepView {
        sweep_id: c.id.clone(),
        name: c.name.clone(),
        created_unix_ms: c.created_ms,
        total: c.total,
        queued: c.queued,
        leased: c.leased,
        done: c.done,
        failed: c.failed,
        cancelled: c.cancelled,
        paused: c.paused,
        reused: c.reused,
        cancel_requested: c.cancel_requested,
        submitted_by: c.submitted_by.clone(),
        epochs_done: c.epochs_done,
        epochs_total: c.epochs_total,
    }
}

/// One early-stopping decision, its point's hyperparameters with it.
pub fn decision(d: &DecisionRow, dataset: Option<pb::DatasetRef>) -> pb::Decision {
    let number = |x: f64| x.is_finite().then_some(x);
    pb::Decision {
        rung: d.rung,
        cohort: d.cohort.clone(),
        point: d.point,
        spec: Some(trial_to_wire(&d.job.trial, dataset)),
        mean: number(d.mean),
        std: number(d.std),
        seeds: d.seeds,
        action: d.action.clone(),
        cutoff: d.cutoff.and_then(number),
        among: d.among,
        decided_unix_ms: d.decided_ms,
    }
}

pub fn job(j: &Job, sweep_id: &str, dataset: Option<pb::DatasetRef>) -> pb::JobView {
    let (worker_id, result, summary, error) = match &j.state {
        JobState::Queued => (String::new(), None, None, String::new()),
        JobState::Leased { worker, .. } => {
            (worker_name(worker).to_string(), None, None, String::new())
        }
        JobState::Done { result, summary } => (
            String::new(),
            Some(result.into()),
            summary.as_ref().map(Into::into),
            String::new(),
        ),
        JobState::Failed { error } => (String::new(), None, None, error.clone()),
        JobState::Cancelled { reason } | JobState::Paused { reason } => {
            (String::new(), None, None, reason.clone())
        }
    };
    // A job not running now names who ran it last, when the list read it.
    let worker_id = match (&j.last_worker, worker_id.is_empty()) {
        (Some(last), true) => worker_name(last).to_string(),
        _ => worker_id,
    };
    pb::JobView {
        job_id: j.id.clone(),
        sweep_id: sweep_id.to_string(),
        spec: Some(trial_to_wire(&j.trial, dataset)),
        state: pb::JobState::from(j.state.status()) as i32,
        attempts: j.attempts,
        worker_id,
        epochs_done: j.epochs_done,
        latest: j.latest.as_ref().map(Into::into),
        result,
        error,
        summary,
    }
}

pub fn lease(g: &LeaseGrant, dataset: pb::DatasetRef, sweep_id: String) -> pb::Lease {
    pb::Lease {
        lease_id: g.lease_id.clone(),
        job_id: g.job.id.clone(),
        spec: Some(trial_to_wire(&g.job.trial, Some(dataset))),
        expires_unix_ms: g.expires_at,
        attempt: g.attempt,
        sweep_id,
        resume_epoch: g.resume_epoch.unwrap_or(0),
    }
}

pub fn result_row(r: &ResultRow, dataset: Option<pb::DatasetRef>) -> pb::ResultRow {
    // A number no seed measured is unset on the wire, and so is a spread over fewer than two
    // seeds (one seed has no sample standard deviation: shown `± –`, not `± 0.00`).
    let spread = r.seeds >= 2;
    let split = |s: Option<Spread>| (s.map(|s| s.mean), s.filter(|_| spread).map(|s| s.std));
    let (mean_test_acc, std_test_acc) = split(r.test_acc);
    let (mean_best_test_acc, std_best_test_acc) = split(r.best_test_acc);
    let (mean_best_val_loss, std_best_val_loss) = split(r.best_val_loss);
    let (mean_best_val_acc, std_best_val_acc) = split(r.best_val_acc);
    let (mean_best_epoch, std_best_epoch) = split(r.best_epoch);
    let (mean_train_seconds, std_train_seconds) = split(r.train_seconds);
    pb::ResultRow {
        spec: Some(trial_to_wire(&r.point, dataset)),
        seeds: r.seeds,
        mean_test_acc,
        std_test_acc,
        mean_best_test_acc,
        std_best_test_acc,
        failed: r.failed,
        cancelled: r.cancelled,
        pending: r.pending,
        mean_best_val_loss,
        std_best_val_loss,
        mean_best_val_acc,
        std_best_val_acc,
        mean_best_epoch,
        std_best_epoch,
        mean_train_seconds,
        std_train_seconds,
        tie: r.tie,
        stopped_at_epoch: r.stopped_at,
    }
}

/// Rows `offset..offset + limit` of a sweep's results, with the token of the next page (which
/// names `ended`, the ended-job count the aggregate was made at).
pub fn results_page(
    aggregated: &Aggregated,
    offset: usize,
    limit: usize,
    ended: u32,
) -> pb::GetResultsResponse {
    let (aggregate, dataset) = aggregated;
    let rows = &aggregate.rows;
    let total = rows.len();
    let next = offset.saturating_add(limit);
    pb::GetResultsResponse {
        rows: rows
            .iter()
            .skip(offset)
            .take(limit)
            .map(|r| result_row(r, None))
            .collect(),
        best: aggregate.best.map_or(-1, |b| b as i32),
        next_page_token: if next < total {
            format!("{next}.{ended}")
        } else {
            String::new()
        },
        total_rows: total as u32,
        dataset: dataset.as_ref().map(pb::DatasetRef::from),
        hints: aggregate.hints.clone(),
    }
}
