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

/// Six drawn points × two seeds, halved at epochs 1 and 3 of 4 (eta 3).
const HALVING: &str = r#"
name = "halving"
dataset = "synthetic:20000"
val_fraction = 0.2
lease_timeout_s = 10
[defaults]
max_epochs = 4
batch_size = 64
[search]
method = "random"
points = 6
search_seed = 5
[search.space]
learning_rate = { log_uniform = [1e-4, 1e-1] }
[search.stop]
rule = "halving"
min_epochs = 1
eta = 3
[grid]
seed = [0, 1]
"#;

/// The decision log in a coordinator's state file: rung, cohort, kept and stopped points, cutoff.
type DecisionLog = Vec<(u32, String, String, String, Option<f64>)>;

fn decision_log(dir: &std::path::Path) -> DecisionLog {
    let db = rusqlite::Connection::open_with_flags(
        dir.join("state.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut stmt = db
        .prepare("SELECT rung, cohort, kept_json, stopped_json, cutoff FROM decisions ORDER BY rung, cohort")
        .unwrap();
    stmt.query_map([], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

/// The sweep run on a fresh coordinator by `workers` workers with `extra` arguments: its results,
/// its jobs and its decision log.
async fn halving_run(
    file: &str,
    tag: &str,
    workers: usize,
    extra: &[&str],
) -> (
    pb::GetResultsResponse,
    Vec<pb::JobView>,
    DecisionLog,
    pb::ListDecisionsResponse,
) {
    let dir = tempfile::tempdir().unwrap();
    let (_coord, url) = coordinator(dir.path(), "127.0.0.1:0", tag);
    let sweep_id = submit(&url, file).await.sweep_id;
    let _workers: Vec<_> = (0..workers)
        .map(|i| worker_with(dir.path(), &url, &format!("{tag}{i}"), extra))
        .collect();
    wait_for(
        &url,
        &sweep_id,
        LONG,
        "the halving sweep to finish",
        |s, _| s.total > 0 && s.queued == 0 && s.leased == 0,
    )
    .await;
    let results = client(&url).await.results(&sweep_id).await.unwrap();
    (
        results,
        jobs(&url, &sweep_id).await,
        decision_log(dir.path()),
        client(&url).await.decisions(&sweep_id).await.unwrap(),
    )
}

/// Sync halving decides on seed means at each rung, the same way whatever the workers: one
/// worker training all twelve lanes in one pack, or two workers in packs of two. The kept point's
/// trials end exactly as they do when their pack-mates were stopped or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_halving_makes_the_same_decisions_whatever_the_workers() {
    let (a, jobs_a, log_a, a_decisions) = halving_run(HALVING, "a", 1, &["--pack", "16"]).await;
    let (b, jobs_b, log_b, _) = halving_run(HALVING, "b", 2, &["--pack", "2"]).await;
    assert_eq!(log_a, log_b, "the same decision log");
    // Read back over the wire: one row per point judged, 6 at rung 1, 2 at rung 3.
    let rungs: Vec<(u32, String)> = a_decisions
        .decisions
        .iter()
        .map(|d| (d.rung, d.action.clone()))
        .collect();
    let count = |rung, action: &str| {
        rungs
            .iter()
            .filter(|(r, a)| *r == rung && a == action)
            .count()
    };
    assert_eq!(
        (
            count(1, "kept"),
            count(1, "stopped"),
            count(3, "kept"),
            count(3, "stopped")
        ),
        (2, 4, 1, 1),
        "{rungs:?}"
    );
    assert_eq!(
        (a_decisions.rule.as_str(), a_decisions.mode.as_str()),
        ("halving", "sync")
    );
    let stopped = |r: &pb::GetResultsResponse| -> Vec<Option<u32>> {
        r.rows.iter().map(|row| row.stopped_at_epoch).collect()
    };
    assert_eq!(stopped(&a), stopped(&b), "the same decisions");
    let mut at = stopped(&a);
    at.sort();
    assert_eq!(
        at,
        [None, Some(1), Some(1), Some(1), Some(1), Some(3)],
        "⌈6/3⌉ = 2 past rung 1, 1 past rung 3"
    );
    // The best is the one point never stopped, in both runs, with the same numbers.
    let kept = a
        .rows
        .iter()
        .position(|r| r.stopped_at_epoch.is_none())
        .unwrap();
    assert_eq!((a.best, b.best), (kept as i32, kept as i32));
    assert_eq!(
        a.rows[kept].mean_best_val_loss,
        b.rows[kept].mean_best_val_loss
    );
    let spec = a.rows[kept].spec.clone().unwrap();
    for (ja, jb) in jobs_a.iter().zip(&jobs_b) {
        let (sa, sb) = (ja.spec.clone().unwrap(), jb.spec.clone().unwrap());
        assert_eq!((sa.learning_rate, sa.seed), (sb.learning_rate, sb.seed));
        if sa.learning_rate == spec.learning_rate {
            assert_eq!(
                (state(ja), state(jb)),
                (pb::JobState::Done, pb::JobState::Done)
            );
            assert_eq!(ja.result, jb.result, "seed {}", sa.seed);
        }
    }
    // In the one pack of run a, stopped points' lanes left it while their mates trained on (the
    // kept point's results above are those of run b, where no pack held a stopped lane).
    let left = jobs_a
        .iter()
        .filter(|j| state(j) == pb::JobState::Cancelled)
        .count();
    assert!(left >= 1, "no stopped lane left its pack early");
    // A stopped point's jobs say why, unless they finished before the decision reached them.
    for j in &jobs_a {
        if state(j) == pb::JobState::Cancelled {
            assert!(j.error.starts_with("stopped early at epoch"), "{}", j.error);
        }
    }
}

/// A coordinator SIGKILLed while a rung is half reported, and started again on its state file,
/// makes each decision once and the same as an uninterrupted run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_killed_mid_rung_makes_each_decision_once() {
    // Epochs of about a second (jsc-s on 80,000 training rows in batches of 32), so the kill
    // falls inside rung 1.
    let slow = HALVING
        .replace("synthetic:20000", "synthetic:100000")
        .replace("batch_size = 64", "batch_size = 32\nmodel = \"jsc-s\"");
    let (reference, _, log, _) = halving_run(&slow, "ref", 1, &["--pack", "2"]).await;
    assert_eq!(log.len(), 2, "rungs 1 and 3: {log:?}");
    let dir = tempfile::tempdir().unwrap();
    let (mut coord, url) = coordinator(dir.path(), "127.0.0.1:0", "first");
    let sweep_id = submit(&url, &slow).await.sweep_id;
    let _w = worker_with(dir.path(), &url, "1", &["--pack", "2"]);
    wait_for(
        &url,
        &sweep_id,
        LONG,
        "a point to pass rung 1",
        |_, jobs| jobs.iter().any(|j| j.epochs_done >= 1),
    )
    .await;
    coord.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let at_kill = decision_log(dir.path());
    assert!(
        at_kill.len() < log.len(),
        "killed before the last rung: {at_kill:?}"
    );
    let listen = url.trim_start_matches("http://").to_string();
    let (_coord, url2) = coordinator(dir.path(), &listen, "second");
    assert_eq!(url, url2);
    wait_for(
        &url,
        &sweep_id,
        LONG,
        "the sweep to finish after the restart",
        |s, _| s.total > 0 && s.queued == 0 && s.leased == 0,
    )
    .await;
    let results = client(&url).await.results(&sweep_id).await.unwrap();
    let stopped = |r: &pb::GetResultsResponse| -> Vec<Option<u32>> {
        r.rows.iter().map(|row| row.stopped_at_epoch).collect()
    };
    assert_eq!(stopped(&results), stopped(&reference));
    assert_eq!(
        decision_log(dir.path()),
        log,
        "the same decisions, each once"
    );
}

/// Promotion-based ASHA with real workers: seeds pause at rung 1 (their lanes leave their packs),
/// promoted points resume from the state saved with their report, and a resumed trial ends
/// exactly as the same trial trained without a pause by `jetsweep-worker train` alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_halving_resumes_promoted_points_from_their_checkpoint_as_if_never_paused() {
    let file = HALVING.replace("eta = 3", "eta = 3\nmode = \"async\"");
    let dir = tempfile::tempdir().unwrap();
    let (_coord, url) = coordinator(dir.path(), "127.0.0.1:0", "a");
    let sweep_id = submit(&url, &file).await.sweep_id;
    let _workers: Vec<_> = (0..2)
        .map(|i| worker_with(dir.path(), &url, &format!("w{i}"), &["--pack", "2"]))
        .collect();
    wait_for(&url, &sweep_id, LONG, "the ASHA sweep to finish", |s, _| {
        s.total > 0 && s.queued == 0 && s.leased == 0 && s.paused == 0
    })
    .await;
    let results = client(&url).await.results(&sweep_id).await.unwrap();
    let finished = results
        .rows
        .iter()
        .filter(|r| r.stopped_at_epoch.is_none())
        .count();
    assert!(finished >= 1, "some point reaches the last epoch");
    assert!(
        results.rows.iter().any(|r| r.stopped_at_epoch == Some(1)),
        "some point stops at rung 1"
    );
    // `jetsweep status` tells each point's last rung and why.
    let out = std::process::Command::new(coordinator_bin())
        .args(["status", &sweep_id, "--coordinator", &url])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    for needle in [
        "early stopping: async successive halving on the seed mean of val_loss, eta 3",
        "rung 1: 6 points judged",
        "promoted at epoch",
        "stopped at epoch 1: not in the top 1/3",
        "trial-epochs trained:",
    ] {
        assert!(stdout.contains(needle), "{needle:?} not in:\n{stdout}");
    }
    // The dashboard's rung table reads the same tallies.
    let (status, body) = jetsweep_coordinator::testkit::http_get(
        &url,
        &format!("/api/sweeps/{sweep_id}/stopping"),
        None,
    );
    assert_eq!(status, 200, "{body}");
    let st: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (st["rule"].as_str(), st["mode"].as_str()),
        (Some("halving"), Some("async"))
    );
    let rung1 = &st["rungs"][0];
    assert_eq!(
        (rung1["rung"].as_u64(), rung1["judged"].as_u64()),
        (Some(1), Some(6))
    );
    assert_eq!(
        rung1["went_on"].as_u64().unwrap() + rung1["stopped"].as_u64().unwrap(),
        6,
        "{st}"
    );
    let (spent, full) = (
        st["trial_epochs"].as_u64().unwrap(),
        st["full_epochs"].as_u64().unwrap(),
    );
    assert!(spent < full && full == 48, "{st}");
    let jobs = jobs(&url, &sweep_id).await;
    for j in &jobs {
        assert!(
            matches!(state(j), pb::JobState::Done | pb::JobState::Cancelled),
            "{j:?}"
        );
    }
    // A seed that paused and was promoted trained in two attempts, resuming after rung 1.
    let resumed: Vec<&pb::JobView> = jobs
        .iter()
        .filter(|j| state(j) == pb::JobState::Done && j.attempts >= 2)
        .collect();
    assert!(!resumed.is_empty(), "no promoted seed resumed: {jobs:?}");
    let job = resumed[0];
    // Its first attempt paused; its last began after the epoch it paused at, not from epoch 1.
    let db = rusqlite::Connection::open_with_flags(
        dir.path().join("state.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let (first_outcome, resumed_from): (String, u32) = db
        .query_row(
            "SELECT (SELECT outcome FROM attempts WHERE job_id = ?1 AND attempt = 1),
                    (SELECT MIN(e.epoch) FROM attempts a JOIN epochs e ON e.lease_id = a.lease_id
                     WHERE a.job_id = ?1 AND a.attempt = (SELECT MAX(attempt) FROM attempts WHERE job_id = ?1))",
            [&job.job_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(first_outcome, "paused");
    assert!(
        resumed_from > 1,
        "the last attempt reported from epoch {resumed_from}"
    );
    let spec = job.spec.clone().unwrap();
    let (lr, seed) = (spec.learning_rate.to_string(), spec.seed.to_string());
    let alone = run_worker_cli(
        dir.path(),
        &[
            "train",
            "--dataset",
            "synthetic:20000",
            "--val-fraction",
            "0.2",
            "--batch-size",
            "64",
            "--max-epochs",
            "4",
            "--lr",
            &lr,
            "--seed",
            &seed,
            "--json",
        ],
    );
    assert!(alone.status.success(), "{:?}", text(&alone));
    let lines = json_lines(&alone);
    let last = lines.last().unwrap();
    let epoch = lines
        .iter()
        .rfind(|l| l["epoch"].as_u64() == Some(4))
        .unwrap_or_else(|| panic!("no epoch 4 in {lines:?}"));
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
}

/// TPE with ASHA, with real workers: the sweep starts with its ten random points and ends with
/// all fourteen, each suggested point's seeds trained and judged like the first ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tpe_search_with_async_halving_suggests_points_until_it_has_them_all() {
    let file = HALVING
        .replace("method = \"random\"", "method = \"tpe\"")
        .replace("points = 6", "points = 14")
        .replace("eta = 3", "eta = 3\nmode = \"async\"");
    let dir = tempfile::tempdir().unwrap();
    let (_coord, url) = coordinator(dir.path(), "127.0.0.1:0", "a");
    let submitted = submit(&url, &file).await;
    assert_eq!(submitted.total, 20, "ten startup points x two seeds");
    let sweep_id = submitted.sweep_id;
    let _workers: Vec<_> = (0..2)
        .map(|i| worker_with(dir.path(), &url, &format!("w{i}"), &["--pack", "4"]))
        .collect();
    wait_for(&url, &sweep_id, LONG, "the TPE sweep to finish", |s, _| {
        s.total == 28 && s.queued == 0 && s.leased == 0 && s.paused == 0
    })
    .await;
    let results = client(&url).await.results(&sweep_id).await.unwrap();
    assert_eq!(results.rows.len(), 14);
    assert!(results.rows.iter().any(|r| r.stopped_at_epoch.is_none()));
    let lrs: Vec<f64> = results
        .rows
        .iter()
        .map(|r| r.spec.as_ref().unwrap().learning_rate)
        .collect();
    for lr in &lrs {
        assert!((1e-4..=1e-1).contains(lr), "{lr}");
    }
    let db = rusqlite::Connection::open_with_flags(
        dir.path().join("state.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let suggested: u32 = db
        .query_row("SELECT COUNT(*) FROM suggested_points", [], |r| r.get(0))
        .unwrap();
    assert_eq!(suggested, 4);
}
