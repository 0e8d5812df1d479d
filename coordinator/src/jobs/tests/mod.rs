//! The lifecycle rules, checked over a real SQLite store with time passed in; one file per
//! topic, the shared fixtures here.

use jetsweep_proto::dataset::ValidationKind;
use jetsweep_proto::metrics::EpochMetrics;

use super::*;
use crate::Error;
use crate::store::Store;
use crate::sweep::SweepSpec;

const SWEEP: &str = r#"
name = "lab1 batch size"
attempts = 2
lease_timeout_s = 10
[defaults]
max_epochs = 3
learning_rate = 1e-3
[grid]
batch_size = [64, 128]
seed = [0, 1, 2]
"#;

fn dataset() -> DatasetRef {
    DatasetRef {
        spec: "synthetic".into(),
        sha256: "d5".into(),
        bytes: 10,
        synthetic: true,
        validation: ValidationKind::TrainAsVal,
    }
}

fn setup() -> (Store, SweepCounts, String, String) {
    let mut store = Store::in_memory().unwrap();
    let spec = SweepSpec::parse(SWEEP).unwrap();
    let sweep = store
        .write(|tx| submit(tx, &spec, SWEEP, &dataset(), 1_000))
        .unwrap();
    let w1 = store
        .write(|tx| register_worker(tx, "alpha", "cpu", 2, 1_000))
        .unwrap();
    let w2 = store
        .write(|tx| register_worker(tx, "beta", "cpu", 2, 1_000))
        .unwrap();
    (store, sweep, w1, w2)
}

fn metrics(epoch: u32) -> EpochMetrics {
    EpochMetrics {
        epoch,
        lr: 1e-3,
        train_loss: 1.0,
        train_acc: 0.5,
        val_loss: 1.0,
        val_acc: 0.5,
        test_loss: 1.0,
        test_acc: 0.5,
        seconds: 0.1,
        samples_per_second: 1e6,
    }
}

/// The worker a grant went to (every report on it must name that worker).
fn holder(g: &LeaseGrant) -> String {
    match &g.job.state {
        JobState::Leased { worker, .. } => worker.clone(),
        other => panic!("not leased: {other:?}"),
    }
}

fn result(acc: f64) -> TrialResult {
    TrialResult {
        params: 117,
        test_acc: acc,
        best_epoch: 3,
        best_test_acc: acc,
    }
}

/// Leases every queued job of the store to `worker` and completes each with all its epochs.
fn run_all(store: &mut Store, worker: &str, now: Millis) -> usize {
    let grants = store.write(|tx| lease_jobs(tx, worker, 64, now)).unwrap();
    for g in &grants {
        store
            .write(|tx| {
                let epochs: Vec<_> = (1..=3).map(metrics).collect();
                complete(tx, &g.lease_id, worker, &epochs, &result(0.7), now + 1)
            })
            .unwrap();
    }
    grants.len()
}

mod asha;
mod cancel;
mod complete;
mod delete;
mod halving;
mod invalidate;
mod lease;
mod share;
mod submit;
mod tpe;
mod workers;
