//! Stopping on request, as Slurm, Kubernetes and people at a terminal ask: a worker told twice to
//! stop hands its job back at once (the job is queued again, not failed, and the next worker
//! resumes it from its last reported epoch); `jetsweep run` interrupted stops its workers, keeps
//! what finished, and says how to carry on.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use jetsweep_proto::v1 as pb;

use crate::support::{coordinator_bin, text};
use jetsweep_tests::cluster::*;

/// Jobs of a few seconds each, with 30 s leases (see the fixture).
fn slow(name: &str, seeds: &str) -> String {
    jetsweep_coordinator::testkit::sweeps::slow(name, seeds, 30)
}

const LONG: Duration = Duration::from_secs(240);

/// `jetsweep run slow.toml` in `dir` with `workers` workers and its state at `state`, once its
/// workers' log says a job started.
fn run_until_a_job_starts(
    dir: &std::path::Path,
    state: &std::path::Path,
    workers: u32,
) -> std::process::Child {
    let child = Command::new(coordinator_bin())
        .args([
            "run",
            "slow.toml",
            "--workers",
            &workers.to_string(),
            "--state",
        ])
        .arg(state)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = state.with_extension("workers.log");
    let start = Instant::now();
    while !std::fs::read_to_string(&log).is_ok_and(|l| l.contains("job started")) {
        assert!(start.elapsed() < LONG, "no job started");
        std::thread::sleep(Duration::from_millis(100));
    }
    child
}

/// Two SIGTERMs: the worker stops training, tells the coordinator, and exits within seconds; the
/// job is queued again without spending an attempt, and another worker finishes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_told_twice_hands_its_job_back() {
    let dir = tempfile::tempdir().unwrap();
    let (_coord, url) = coordinator(dir.path(), "127.0.0.1:0", "a");
    let sweep_id = submit(&url, &slow("hand-back", "0")).await.sweep_id;
    let mut w = worker(dir.path(), &url, "1");
    wait_for(&url, &sweep_id, LONG, "the job to start", |_, jobs| {
        jobs.iter().any(|j| j.epochs_done >= 1)
    })
    .await;
    let pid = w.child.id();
    signal(pid, libc::SIGTERM);
    tokio::time::sleep(Duration::from_millis(200)).await;
    signal(pid, libc::SIGTERM);
    let start = Instant::now();
    while w.child.try_wait().unwrap().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "the worker did not exit"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let job = jobs(&url, &sweep_id).await.remove(0);
    assert_eq!(state(&job), pb::JobState::Queued, "{job:?}");
    let log = std::fs::read_to_string(&w.log).unwrap();
    assert!(log.contains("handed back"), "{log}");
    let w2 = worker(dir.path(), &url, "2");
    wait_for(
        &url,
        &sweep_id,
        LONG,
        "another worker to finish it",
        |s, _| s.done == 1,
    )
    .await;
    let job = jobs(&url, &sweep_id).await.remove(0);
    assert_eq!(job.attempts, 2);
    // It carried on from the last epoch the first worker reported, not from the start.
    let log = std::fs::read_to_string(&w2.log).unwrap();
    assert!(
        log.contains("resumed from the state saved after epoch"),
        "{log}"
    );
}

/// Ctrl-C on `jetsweep run`: it stops its workers (none outlives it), prints what finished and the
/// command that carries on, and exits non-zero; that command then finishes the sweep, reusing
/// what was done.
#[test]
fn an_interrupted_run_stops_its_workers_and_says_how_to_resume() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("slow.toml"), slow("interrupted", "0, 1, 2")).unwrap();
    let state = dir.path().join("state").join("state.db");
    let child = run_until_a_job_starts(dir.path(), &state, 1);
    signal(child.id(), libc::SIGINT);
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("interrupted") && stderr.contains("jetsweep run slow.toml --state"),
        "{stderr}"
    );
    // No worker of this run is left: none has the run's cache folder on its command line.
    let cache = state.with_extension("data");
    let cache = cache.to_str().unwrap();
    let alive: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|p| std::fs::read(p.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(cache) && c.contains("jetsweep-worker"))
        .collect();
    assert!(alive.is_empty(), "workers outlived the run: {alive:?}");
    let again = Command::new(coordinator_bin())
        .args(["run", "slow.toml", "--workers", "2", "--state"])
        .arg(&state)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let (stdout, stderr) = text(&again);
    assert!(again.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("3 done, 0 failed"), "{stderr}");
}

/// Ctrl-C twice: `run` stops its workers at once and, since it owns the coordinator, hands their
/// jobs back: none is left "running" until a lease expires.
#[test]
fn a_run_stopped_at_once_leaves_no_job_leased() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("slow.toml"), slow("at-once", "0, 1")).unwrap();
    let state = dir.path().join("state").join("state.db");
    let child = run_until_a_job_starts(dir.path(), &state, 2);
    signal(child.id(), libc::SIGINT);
    std::thread::sleep(Duration::from_millis(300));
    signal(child.id(), libc::SIGINT);
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("handed back"), "{stderr}");
    let db =
        rusqlite::Connection::open_with_flags(&state, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let leased: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM jobs WHERE state = 'leased'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(leased, 0, "{stderr}");
}
