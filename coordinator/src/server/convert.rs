//! Domain types to wire types and back. Glue only: no rules here.

use jetsweep_proto::v1 as pb;

use crate::jobs::{DatasetRef, EpochReport, Job, JobState, LeaseGrant, SweepCounts, TrialResult};
use crate::results::ResultRow;
use crate::sweep::Trial;

pub fn dataset(d: &DatasetRef) -> pb::DatasetRef {
    pb::DatasetRef {
        spec: d.spec.clone(),
        sha256: d.sha256.clone(),
        size_bytes: d.bytes,
        synthetic: d.synthetic,
        validation: d.validation.clone(),
    }
}

pub fn trial(t: &Trial, dataset: Option<pb::DatasetRef>) -> pb::TrialSpec {
    pb::TrialSpec {
        model: t.model.clone(),
        dataset,
        batch_size: t.batch_size,
        max_epochs: t.max_epochs,
        learning_rate: t.learning_rate,
        seed: t.seed,
        optimizer: t.optimizer.clone(),
    }
}

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
        reused: c.reused,
        cancel_requested: c.cancel_requested,
    }
}

pub fn epoch_to_wire(e: &EpochReport) -> pb::EpochMetrics {
    pb::EpochMetrics {
        epoch: e.epoch,
        lr: e.lr,
        train_loss: e.train_loss,
        train_acc: e.train_acc,
        val_loss: e.val_loss,
        val_acc: e.val_acc,
        test_loss: e.test_loss,
        test_acc: e.test_acc,
        seconds: e.seconds,
        samples_per_second: e.samples_per_second,
    }
}

pub fn epoch_from_wire(e: &pb::EpochMetrics) -> EpochReport {
    EpochReport {
        epoch: e.epoch,
        lr: e.lr,
        train_loss: e.train_loss,
        train_acc: e.train_acc,
        val_loss: e.val_loss,
        val_acc: e.val_acc,
        test_loss: e.test_loss,
        test_acc: e.test_acc,
        seconds: e.seconds,
        samples_per_second: e.samples_per_second,
    }
}

pub fn result_to_wire(r: &TrialResult) -> pb::TrialResult {
    pb::TrialResult {
        params: r.params,
        test_acc: r.test_acc,
        best_epoch: r.best_epoch,
        best_test_acc: r.best_test_acc,
    }
}

pub fn result_from_wire(r: &pb::TrialResult) -> TrialResult {
    TrialResult {
        params: r.params,
        test_acc: r.test_acc,
        best_epoch: r.best_epoch,
        best_test_acc: r.best_test_acc,
    }
}

pub fn job(j: &Job, sweep_id: &str, dataset: Option<pb::DatasetRef>) -> pb::JobView {
    let (state, worker_id, result, error) = match &j.state {
        JobState::Queued => (pb::JobState::Queued, String::new(), None, String::new()),
        JobState::Leased { worker, .. } => {
            (pb::JobState::Leased, worker.clone(), None, String::new())
        }
        JobState::Done { result } => (
            pb::JobState::Done,
            String::new(),
            Some(result_to_wire(result)),
            String::new(),
        ),
        JobState::Failed { error } => (pb::JobState::Failed, String::new(), None, error.clone()),
        JobState::Cancelled { reason } => {
            (pb::JobState::Cancelled, String::new(), None, reason.clone())
        }
    };
    pb::JobView {
        job_id: j.id.clone(),
        sweep_id: sweep_id.to_string(),
        spec: Some(trial(&j.trial, dataset)),
        state: state as i32,
        attempts: j.attempts,
        worker_id,
        epochs_done: j.epochs_done,
        latest: j.latest.as_ref().map(epoch_to_wire),
        result,
        error,
    }
}

pub fn lease(g: &LeaseGrant, dataset: pb::DatasetRef) -> pb::Lease {
    pb::Lease {
        lease_id: g.lease_id.clone(),
        job_id: g.job.id.clone(),
        spec: Some(trial(&g.job.trial, Some(dataset))),
        expires_unix_ms: g.expires_at,
        attempt: g.attempt,
    }
}

pub fn result_row(r: &ResultRow, dataset: Option<pb::DatasetRef>) -> pb::ResultRow {
    pb::ResultRow {
        spec: Some(trial(&r.point, dataset)),
        seeds: r.seeds,
        mean_test_acc: r.mean_test_acc,
        std_test_acc: r.std_test_acc,
        mean_best_test_acc: r.mean_best_test_acc,
        std_best_test_acc: r.std_best_test_acc,
    }
}
