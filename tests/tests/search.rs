//! Searches as users run them: a sampled sweep with weight decay, submitted with `jetsweep submit`
//! and trained by a real worker process; each drawn point's trials are what `jetsweep-worker
//! train` gives alone for the same hyperparameters.

use std::time::Duration;

use jetsweep_proto::v1 as pb;

use crate::support::{coordinator_bin, json_lines, run_worker_cli, text};
use jetsweep_tests::cluster::*;

const LONG: Duration = Duration::from_secs(240);

/// Three drawn points (learning rate and weight decay) × two seeds, on a held-out split.
const SEARCH: &str = r#"
name = "search"
dataset = "synthetic:5000"
val_fraction = 0.2
lease_timeout_s = 10
[defaults]
max_epochs = 2
batch_size = 256
[search]
method = "random"
points = 3
search_seed = 11
[search.space]
learning_rate = { log_uniform = [1e-4, 1e-2] }
weight_decay  = { log_uniform = [1e-2, 1e-1] }
[grid]
seed = [0, 1]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_random_search_with_weight_decay_trains_each_drawn_point_as_the_cli_does() {
    let dir = tempfile::tempdir().unwrap();
    let (_coord, url) = coordinator(dir.path(), "127.0.0.1:0", "a");
    let file = dir.path().join("search.toml");
    std::fs::write(&file, SEARCH).unwrap();
    let out = std::process::Command::new(coordinator_bin())
        .args(["submit", file.to_str().unwrap(), "--coordinator", &url])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("warning"), "a held-out split: {stderr}");
    let sweep_id = stdout.trim().to_string();
    let _w = worker_with(dir.path(), &url, "1", &["--pack", "8"]);
    wait_for(&url, &sweep_id, LONG, "the search to finish", |s, _| {
        s.total > 0 && s.done == s.total
    })
    .await;
    let results = client(&url).await.results(&sweep_id).await.unwrap();
    assert_eq!(results.rows.len(), 3, "one row per drawn point");
    for row in &results.rows {
        let s = row.spec.as_ref().unwrap();
        assert_eq!(row.seeds, 2);
        assert!((1e-4..=1e-2).contains(&s.learning_rate), "{s:?}");
        assert!((1e-2..=1e-1).contains(&s.weight_decay), "{s:?}");
    }
    // The trainer got the drawn weight decay: a trial's result is the one the CLI trains alone.
    let job = jobs(&url, &sweep_id).await.remove(1);
    let spec = job.spec.clone().unwrap();
    let (lr, wd, seed) = (
        spec.learning_rate.to_string(),
        spec.weight_decay.to_string(),
        spec.seed.to_string(),
    );
    let alone = run_worker_cli(
        dir.path(),
        &[
            "train",
            "--dataset",
            "synthetic:5000",
            "--val-fraction",
            "0.2",
            "--batch-size",
            "256",
            "--max-epochs",
            "2",
            "--lr",
            &lr,
            "--weight-decay",
            &wd,
            "--seed",
            &seed,
            "--json",
        ],
    );
    assert!(alone.status.success(), "{:?}", text(&alone));
    let lines = json_lines(&alone);
    let last = lines.last().unwrap();
    assert_eq!(last["weight_decay"].as_f64(), Some(spec.weight_decay));
    // The last epoch's losses, to the bit: a weight decay lost on the way would change them.
    let epoch = lines
        .iter()
        .rfind(|l| l["epoch"].as_u64() == Some(2))
        .unwrap_or_else(|| panic!("no epoch 2 in {lines:?}"));
    let latest = job.latest.unwrap();
    assert_eq!(
        (epoch["train_loss"].as_f64(), epoch["val_loss"].as_f64()),
        (Some(latest.train_loss), Some(latest.val_loss)),
        "job {} ({spec:?})",
        job.job_id
    );
    let result = job.result.unwrap();
    assert_eq!(
        (last["test_acc"].as_f64(), last["best_test_acc"].as_f64()),
        (Some(result.test_acc), Some(result.best_test_acc)),
        "job {} ({spec:?})",
        job.job_id
    );
    assert_eq!(state(&job), pb::JobState::Done);
}

#[test]
fn a_search_without_a_held_out_split_is_submitted_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let (_coord, url) = coordinator(dir.path(), "127.0.0.1:0", "a");
    let file = dir.path().join("search.toml");
    std::fs::write(&file, SEARCH.replace("val_fraction = 0.2\n", "")).unwrap();
    let out = std::process::Command::new(coordinator_bin())
        .args(["submit", file.to_str().unwrap(), "--coordinator", &url])
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning:")
            && stderr.contains("training data")
            && stderr.contains("val_fraction"),
        "{stderr}"
    );
}
