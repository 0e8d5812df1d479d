//! Requeued trials resume: a worker killed mid-trial (SIGKILL: no goodbye) leaves the state it
//! reported after its last epoch; once its lease expires, another worker continues from there, and
//! the trial ends with exactly the numbers of a run that was never interrupted.

use std::time::Duration;

use jetsweep_proto::metrics::EpochMetrics;
use jetsweep_proto::v1 as pb;

use jetsweep_tests::cluster::*;

/// One trial of a few seconds (jsc-s on 100,000 jets, batch 32, 8 epochs); a 3 s lease.
const TRIAL: &str = "name = \"resume\"\ndataset = \"synthetic:100000\"\nlease_timeout_s = 3\n[defaults]\nmodel = \"jsc-s\"\nmax_epochs = 8\nbatch_size = 32\nlearning_rate = 1e-3\nseed = 5\n";

const LONG: Duration = Duration::from_secs(240);

/// Every number of an epoch's metrics but the wall-clock ones.
fn numbers(m: &pb::EpochMetrics) -> [f64; 8] {
    EpochMetrics::from(m).training_numbers()
}

/// The epoch a worker's log says it resumed after.
fn resumed_after(log: &str) -> u32 {
    log.split("resumed from the state saved after epoch ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the survivor did not resume:\n{log}"))
}

async fn finished_job(url: &str, sweep: &str) -> pb::JobView {
    wait_for(url, sweep, LONG, "the trial to finish", |s, _| s.done == 1).await;
    jobs(url, sweep).await.remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trial_whose_worker_was_killed_resumes_elsewhere_with_identical_results() {
    // The same trial on two coordinators: one run interrupted, one not, side by side.
    let (interrupted, whole) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (_c1, url) = coordinator(interrupted.path(), "127.0.0.1:0", "interrupted");
    let (_c2, whole_url) = coordinator(whole.path(), "127.0.0.1:0", "whole");
    let sweep = submit(&url, TRIAL).await.sweep_id;
    let whole_sweep = submit(&whole_url, TRIAL).await.sweep_id;
    let _whole_worker = worker(whole.path(), &whole_url, "whole");

    let mut doomed = worker(interrupted.path(), &url, "doomed");
    wait_for(&url, &sweep, LONG, "two epochs reported", |_, jobs| {
        jobs.iter().any(|j| j.epochs_done >= 2)
    })
    .await;
    doomed.kill();
    let survivor = worker(interrupted.path(), &url, "survivor");
    let resumed = finished_job(&url, &sweep).await;
    let reference = finished_job(&whole_url, &whole_sweep).await;

    assert_eq!(resumed.attempts, 2, "{resumed:?}");
    let log = std::fs::read_to_string(&survivor.log).unwrap();
    let after = resumed_after(&log);
    assert!((2..8).contains(&after), "resumed after epoch {after}");
    assert_eq!(resumed.result, reference.result);
    assert_eq!(
        resumed.latest.as_ref().map(numbers),
        reference.latest.as_ref().map(numbers)
    );
}

/// One trial whose best epoch (lowest validation loss) comes early: jsc-s at a high rate with a
/// small held-out split, seed 1, is best after epoch 5 of 16 (found with `jetsweep-worker train
/// --model jsc-s --dataset synthetic:100000 --val-fraction 0.01 --batch-size 32 --max-epochs 16
/// --lr 1e-1 --seed 0-15 --pack 1`; training is deterministic).
const EARLY_BEST: &str = "name = \"early-best\"\ndataset = \"synthetic:100000\"\nval_fraction = 0.01\nlease_timeout_s = 3\n[defaults]\nmodel = \"jsc-s\"\nmax_epochs = 16\nbatch_size = 32\nlearning_rate = 1e-1\nseed = 1\n";

async fn kept_model(url: &str, sweep: &str) -> pb::GetModelResponse {
    client(url)
        .await
        .model(pb::GetModelRequest {
            sweep_id: sweep.into(),
            ..Default::default()
        })
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_trial_keeps_the_best_epoch_of_an_attempt_before_it() {
    // Killed after its best epoch: the kept model is that epoch's, carried across attempts, and
    // equals (byte for byte) the model an uninterrupted run keeps.
    let (interrupted, whole) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (_c1, url) = coordinator(interrupted.path(), "127.0.0.1:0", "interrupted");
    let (_c2, whole_url) = coordinator(whole.path(), "127.0.0.1:0", "whole");
    let sweep = submit(&url, EARLY_BEST).await.sweep_id;
    let whole_sweep = submit(&whole_url, EARLY_BEST).await.sweep_id;
    let _whole_worker = worker(whole.path(), &whole_url, "whole");
    let mut doomed = worker(interrupted.path(), &url, "doomed");
    wait_for(&url, &sweep, LONG, "seven epochs reported", |_, jobs| {
        jobs.iter().any(|j| j.epochs_done >= 7)
    })
    .await;
    doomed.kill();
    let survivor = worker(interrupted.path(), &url, "survivor");
    let resumed = finished_job(&url, &sweep).await;
    let reference = finished_job(&whole_url, &whole_sweep).await;
    assert_eq!(resumed.attempts, 2, "killed before the end: {resumed:?}");
    let log = std::fs::read_to_string(&survivor.log).unwrap();
    let after = resumed_after(&log);
    let (model, reference_model) = (
        kept_model(&url, &sweep).await,
        kept_model(&whole_url, &whole_sweep).await,
    );
    assert_eq!(reference_model.epoch, 5, "the trial this test was made for");
    assert!(
        model.epoch < after,
        "the best epoch ({}) is from the attempt before the resume (after epoch {after})",
        model.epoch
    );
    assert_eq!(model.epoch, reference_model.epoch);
    assert!(model.weights == reference_model.weights, "the same weights");
    assert_eq!(resumed.result, reference.result);
}
