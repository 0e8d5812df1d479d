//! The cluster as users run it: `jetsweep serve`, `jetsweep-worker --coordinator`, `jetsweep` client
//! verbs, as real processes on loopback, killed with SIGKILL where the lifecycle says they may die.

use std::collections::HashMap;
use std::time::Duration;

use jetsweep_proto::v1 as pb;

use crate::support::{coordinator_bin, text};
use jetsweep_tests::cluster::*;

/// 8 quick jobs (the fixture the coordinator's own tests use too).
use jetsweep_coordinator::testkit::sweeps::QUICK;

/// Jobs of a few seconds each, with 3 s leases (see the fixture).
fn slow(name: &str, seeds: &str) -> String {
    jetsweep_coordinator::testkit::sweeps::slow(name, seeds, 3)
}

/// Generous: on a 2-core machine running the whole suite at once, a few seconds of work can take a minute.
const LONG: Duration = Duration::from_secs(240);

fn finished(s: &pb::SweepView, _: &[pb::JobView]) -> bool {
    s.total > 0 && s.queued == 0 && s.leased == 0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_finish_a_sweep_and_resubmitting_runs_nothing_new() {
    let dir = tempfile::tempdir().unwrap();
    let (_coord, url) = coordinator(dir.path(), "127.0.0.1:0", "a");
    let sweep_id = submit(&url, QUICK).await.sweep_id;
    let (_w1, _w2) = (worker(dir.path(), &url, "1"), worker(dir.path(), &url, "2"));
    wait_for(&url, &sweep_id, LONG, "the sweep to finish", finished).await;
    let s = sweep(&url, &sweep_id).await;
    assert_eq!((s.total, s.done, s.failed), (8, 8, 0));
    // Each job's result is what its worker reported for the last epoch.
    let all = jobs(&url, &sweep_id).await;
    for j in &all {
        assert_eq!(state(j), pb::JobState::Done);
        // Who ran it is kept once it is done (one of the two workers).
        assert!(!j.worker_id.is_empty(), "{j:?}");
        let (result, latest) = (j.result.unwrap(), j.latest.unwrap());
        assert_eq!((result.test_acc, j.epochs_done), (latest.test_acc, 3));
    }
    // Results aggregate exactly those numbers.
    let results = client(&url).await.results(&sweep_id).await.unwrap();
    assert_eq!(results.rows.len(), 4);
    for row in &results.rows {
        let spec = row.spec.as_ref().unwrap();
        let accs: Vec<f64> = all
            .iter()
            .filter(|j| {
                let t = j.spec.as_ref().unwrap();
                t.batch_size == spec.batch_size && t.learning_rate == spec.learning_rate
            })
            .map(|j| j.result.unwrap().test_acc)
            .collect();
        assert_eq!(row.seeds, 2);
        assert!((row.mean_test_acc.unwrap() - accs.iter().sum::<f64>() / 2.0).abs() < 1e-12);
    }
    // The CLI shows the same.
    let out = std::process::Command::new(coordinator_bin())
        .args([
            "results",
            &sweep_id,
            "--format",
            "json",
            "--coordinator",
            &url,
        ])
        .output()
        .unwrap();
    let json: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{:?}", text(&out)));
    assert_eq!(
        (
            json["rows"].as_array().unwrap().len(),
            json["synthetic"].as_bool()
        ),
        (4, Some(true))
    );
    // Submitting the same sweep again runs nothing new.
    let again = submit(&url, QUICK).await;
    assert_eq!(
        (again.total, again.reused, again.queued, again.done),
        (8, 8, 0, 8)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_started_mid_sweep_gets_work() {
    let dir = tempfile::tempdir().unwrap();
    let (_coord, url) = coordinator(dir.path(), "127.0.0.1:0", "a");
    let sweep_id = submit(&url, &slow("mid", "0, 1, 2, 3")).await.sweep_id;
    let _first = worker(dir.path(), &url, "1");
    wait_for(
        &url,
        &sweep_id,
        LONG,
        "the first worker to start a job",
        |s, _| s.leased == 1,
    )
    .await;
    let first_id = workers(&url).await[0].worker_id.clone();
    let _second = worker(dir.path(), &url, "2");
    let start = std::time::Instant::now();
    loop {
        if workers(&url)
            .await
            .iter()
            .any(|w| w.worker_id != first_id && !w.job_ids.is_empty())
        {
            break;
        }
        assert!(start.elapsed() < LONG, "the second worker never got a job");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_for(&url, &sweep_id, LONG, "the sweep to finish", finished).await;
    assert_eq!(sweep(&url, &sweep_id).await.done, 4);
}

/// `--exit-when-idle` (a Slurm job array's workers): the worker runs every job of the sweep, and
/// only once it has had no work for that long does it leave, with status 0, saying goodbye.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_told_to_exit_when_idle_finishes_the_sweep_first() {
    let dir = tempfile::tempdir().unwrap();
    let (_coord, url) = coordinator(dir.path(), "127.0.0.1:0", "a");
    let sweep_id = submit(&url, QUICK).await.sweep_id;
    let mut w = worker_with(dir.path(), &url, "idle", &["--exit-when-idle", "2"]);
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = w.child.try_wait().unwrap() {
            break status;
        }
        assert!(start.elapsed() < LONG, "the idle worker never left");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "exit status {status}");
    assert_eq!(
        sweep(&url, &sweep_id).await.done,
        8,
        "it left before the sweep was done"
    );
    let log = std::fs::read_to_string(&w.log).unwrap();
    assert!(log.contains("no work in that time"), "{log}");
    // It said goodbye: listed as left (not gone, as a crashed worker is), at once.
    let listed = workers(&url).await;
    assert_eq!(listed.len(), 1);
    assert!(listed[0].left && !listed[0].gone, "{listed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_workers_job_is_leased_again_and_finished_once() {
    let dir = tempfile::tempdir().unwrap();
    let (_coord, url) = coordinator(dir.path(), "127.0.0.1:0", "a");
    let sweep_id = submit(&url, &slow("kill-worker", "0, 1")).await.sweep_id;
    let mut victim = worker(dir.path(), &url, "victim");
    wait_for(
        &url,
        &sweep_id,
        LONG,
        "a job to report an epoch",
        |_, jobs| {
            jobs.iter()
                .any(|j| state(j) == pb::JobState::Leased && j.epochs_done >= 1)
        },
    )
    .await;
    let killed: String = jobs(&url, &sweep_id)
        .await
        .into_iter()
        .find(|j| state(j) == pb::JobState::Leased)
        .unwrap()
        .job_id;
    victim.kill();
    let _rescuer = worker(dir.path(), &url, "rescuer");
    wait_for(&url, &sweep_id, LONG, "the sweep to finish", finished).await;
    let all = jobs(&url, &sweep_id).await;
    assert!(
        all.iter()
            .all(|j| state(j) == pb::JobState::Done && j.result.is_some()),
        "{all:?}"
    );
    let job = all.iter().find(|j| j.job_id == killed).unwrap();
    assert_eq!(job.attempts, 2, "leased again after its lease expired");
    assert_eq!(job.epochs_done, 8, "the second attempt ran every epoch");
}

/// A worker that packs leases four jobs of one configuration together, one lease each; killed
/// mid-pack, each of its jobs expires on its own lease, is leased again (alone: it may resume) and
/// finishes once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_workers_pack_is_leased_again_job_by_job_and_finished_once() {
    let dir = tempfile::tempdir().unwrap();
    let (_coord, url) = coordinator(dir.path(), "127.0.0.1:0", "a");
    let sweep_id = submit(&url, &slow("kill-pack", "0, 1, 2, 3"))
        .await
        .sweep_id;
    let mut victim = worker_with(dir.path(), &url, "victim", &["--pack", "4"]);
    wait_for(
        &url,
        &sweep_id,
        LONG,
        "the pack of four to report an epoch",
        |s, jobs| s.leased == 4 && jobs.iter().all(|j| j.epochs_done >= 1),
    )
    .await;
    let workers = workers(&url).await;
    assert_eq!(workers.len(), 1);
    assert_eq!(workers[0].job_ids.len(), 4, "one worker holds the pack");
    victim.kill();
    let _rescuer = worker_with(dir.path(), &url, "rescuer", &["--pack", "4"]);
    wait_for(&url, &sweep_id, LONG, "the sweep to finish", finished).await;
    let all = jobs(&url, &sweep_id).await;
    for j in &all {
        assert_eq!(state(j), pb::JobState::Done, "{j:?}");
        assert!(j.result.is_some());
        assert_eq!(
            j.attempts, 2,
            "leased again after its own lease expired: {j:?}"
        );
        assert_eq!(j.epochs_done, 8);
    }
    let log = std::fs::read_to_string(dir.path().join("worker-victim.log")).unwrap();
    assert_eq!(log.matches("pack=4").count(), 4, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_coordinator_restarts_on_its_state_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut coord, url) = coordinator(dir.path(), "127.0.0.1:0", "first");
    let sweep_id = submit(&url, &slow("kill-coordinator", "0, 1, 2, 3, 4, 5"))
        .await
        .sweep_id;
    let (_w1, _w2) = (worker(dir.path(), &url, "1"), worker(dir.path(), &url, "2"));
    wait_for(&url, &sweep_id, LONG, "two jobs to finish", |s, _| {
        s.done >= 2
    })
    .await;
    let before: HashMap<String, f64> = jobs(&url, &sweep_id)
        .await
        .into_iter()
        .filter_map(|j| j.result.map(|r| (j.job_id, r.test_acc)))
        .collect();
    coord.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let listen = url.trim_start_matches("http://").to_string();
    let (_coord, url2) = coordinator(dir.path(), &listen, "second");
    assert_eq!(url, url2);
    wait_for(
        &url,
        &sweep_id,
        LONG,
        "the sweep to finish after the restart",
        finished,
    )
    .await;
    let all = jobs(&url, &sweep_id).await;
    assert_eq!(all.len(), 6);
    assert!(
        all.iter().all(|j| state(j) == pb::JobState::Done),
        "{all:?}"
    );
    for (id, acc) in before {
        let j = all.iter().find(|j| j.job_id == id).unwrap();
        assert_eq!(
            j.result.unwrap().test_acc,
            acc,
            "an accepted result changed"
        );
    }
}

/// A coordinator restarted on an empty state file (a new machine, a lost disk) no longer knows the
/// workers of the old one: they register again by themselves and run its sweeps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_join_again_a_coordinator_that_forgot_them() {
    let dir = tempfile::tempdir().unwrap();
    let (mut coord, url) = coordinator(dir.path(), "127.0.0.1:0", "first");
    let w = worker(dir.path(), &url, "1");
    let start = std::time::Instant::now();
    while workers(&url).await.is_empty() {
        assert!(start.elapsed() < LONG, "the worker never registered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    coord.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let fresh = tempfile::tempdir().unwrap();
    let listen = url.trim_start_matches("http://").to_string();
    let (_coord, url2) = coordinator(fresh.path(), &listen, "second");
    assert_eq!(url, url2);
    let sweep_id = submit(&url, QUICK).await.sweep_id;
    wait_for(
        &url,
        &sweep_id,
        LONG,
        "the forgotten worker to finish the sweep",
        finished,
    )
    .await;
    let s = sweep(&url, &sweep_id).await;
    assert_eq!((s.done, s.failed), (8, 0));
    let log = std::fs::read_to_string(&w.log).unwrap();
    assert!(log.contains("registering again"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_sweep_files_are_refused_and_the_coordinator_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let (_coord, url) = coordinator(dir.path(), "127.0.0.1:0", "a");
    let submit_file = |name: &str, body: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, body).unwrap();
        std::process::Command::new(coordinator_bin())
            .arg("submit")
            .arg(&path)
            .args(["--coordinator", &url])
            .output()
            .unwrap()
    };
    for bad in jetsweep_coordinator::testkit::bad_sweeps::all() {
        let out = submit_file("bad.toml", &bad.toml);
        let (_, stderr) = text(&out);
        assert!(!out.status.success(), "{} was accepted", bad.what);
        for n in bad.names {
            assert!(stderr.contains(n), "{}: {stderr} lacks {n:?}", bad.what);
        }
    }
    let out = submit_file("good.toml", QUICK);
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(client(&url).await.sweeps().await.unwrap().len(), 1);
}

#[test]
fn jetsweep_run_runs_a_sweep_locally_and_prints_the_results() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("quick.toml"), QUICK).unwrap();
    let out = std::process::Command::new(coordinator_bin())
        .args(["run", "quick.toml", "--workers", "2"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("SYNTHETIC")
            && stdout.contains("← best")
            && stdout.lines().filter(|l| l.starts_with("jsc-tiny")).count() == 4,
        "{stdout}"
    );
    assert!(stderr.contains("8 done, 0 failed"), "{stderr}");
}

/// One slow trial (jsc-s, 60 epochs of 80,000 rows): `run` lasts several seconds.
const SLOW_RUN: &str = "name = \"slow-run\"\ndataset = \"synthetic:100000\"\n[defaults]\nmodel = \"jsc-s\"\nmax_epochs = 60\nbatch_size = 64\n";

/// GET `path` at `addr` with an optional cookie: status, head, body.
fn raw_get(addr: &str, path: &str, cookie: Option<&str>) -> (u16, String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let cookie = cookie.map_or(String::new(), |c| format!("Cookie: {c}\r\n"));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{cookie}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

#[test]
fn run_names_its_dashboard_first_and_its_piped_progress_moves_between_job_ends() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("slow.toml"), SLOW_RUN).unwrap();
    let mut child = std::process::Command::new(coordinator_bin())
        .args(["run", "slow.toml", "--workers", "1"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    // The first line: the dashboard's address, a link that logs the browser in.
    let first = lines.next().unwrap().unwrap();
    let link = first
        .strip_prefix("jetsweep: dashboard at ")
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("not the dashboard first: {first}"));
    assert!(
        first.contains("jetsweep-state/"),
        "names the state folder: {first}"
    );
    let rest = link.strip_prefix("http://").unwrap();
    let (addr, path) = rest.split_at(rest.find('/').unwrap());
    assert!(addr.starts_with("127.0.0.1:"), "{first}");
    let (status, head, _) = raw_get(addr, path, None);
    assert_eq!(status, 303, "{head}");
    let cookie = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("set-cookie: ")
                .or_else(|| l.strip_prefix("Set-Cookie: "))
        })
        .and_then(|c| c.split(';').next())
        .unwrap_or_else(|| panic!("no session cookie: {head}"))
        .to_string();
    // The second: the sweep and its page.
    let second = lines.next().unwrap().unwrap();
    assert!(
        second.starts_with("jetsweep: sweep slow-run-1: 1 jobs · http://127.0.0.1:")
            && second.ends_with("/sweeps/slow-run-1"),
        "{second}"
    );
    let (status, _, body) = raw_get(addr, "/api/sweeps", Some(&cookie));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("slow-run-1"), "{body}");
    let (status, _, _) = raw_get(addr, "/api/sweeps", None);
    assert_eq!(status, 401, "the link, not the address, lets a browser in");
    // The rest of stderr: progress lines (stderr is a pipe), trial-epochs moving while the one
    // job runs, not only when it ends.
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    assert!(child.wait().unwrap().success(), "{rest:?}");
    let moving = rest.iter().any(|l| {
        let done: Option<u64> = l
            .split("slow-run-1: ")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .and_then(|n| n.parse().ok());
        l.contains("1 running") && done.is_some_and(|d| d > 0 && d < 60)
    });
    assert!(
        moving,
        "no progress line between 0 and 60 trial-epochs: {rest:#?}"
    );
    assert!(
        rest.iter()
            .any(|l| l.contains("slow-run-1: 60/60 trial-epochs")),
        "{rest:#?}"
    );
    // No log lines on the terminal: they are in the state folder.
    assert!(!rest.iter().any(|l| l.contains(" INFO ")), "{rest:#?}");
    let log = std::fs::read_to_string(dir.path().join("jetsweep-state/state.log")).unwrap();
    assert!(log.contains("sweep submitted"), "{log}");
}

/// A coordinator started with a token refuses clients and workers without it, or with a wrong one,
/// with a message saying what to do, and serves those that have it.
#[test]
fn a_coordinator_with_a_token_serves_only_those_that_present_it() {
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let (_coord, url) = coordinator_with(
        dir.path(),
        "127.0.0.1:0",
        "a",
        &["--token", "s3cret-s3cret-s3cret"],
    );
    let sweep_file = dir.path().join("quick.toml");
    std::fs::write(&sweep_file, QUICK).unwrap();
    let submit = |token: Option<&str>| {
        let mut cmd = Command::new(coordinator_bin());
        cmd.arg("submit")
            .arg(&sweep_file)
            .args(["--coordinator", &url])
            .env_remove("JETSWEEP_TOKEN");
        if let Some(t) = token {
            cmd.env("JETSWEEP_TOKEN", t);
        }
        cmd.output().unwrap()
    };
    for (token, needle) in [(None, "requires a token"), (Some("wrong"), "unknown token")] {
        let out = submit(token);
        let (_, stderr) = text(&out);
        assert!(
            !out.status.success() && stderr.contains(needle),
            "{token:?}: {stderr}"
        );
    }
    let out = submit(Some("s3cret-s3cret-s3cret"));
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let sweep_id = stdout.trim().to_string();

    // A worker with the wrong token stops at once and says why; nothing is leased to it.
    let out = Command::new(crate::support::worker_bin())
        .args(["--coordinator", &url, "--token", "nope", "--cache-dir"])
        .arg(dir.path().join("cache-bad"))
        .env_remove("JETSWEEP_TOKEN")
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert!(
        !out.status.success() && stderr.contains("unknown token"),
        "{stderr}"
    );

    // With the token, a worker runs the sweep and `jetsweep watch` follows it to the end.
    let _worker = {
        let log = dir.path().join("worker-good.log");
        let child = Command::new(crate::support::worker_bin())
            .args(["--coordinator", &url, "--slots", "2", "--cache-dir"])
            .arg(dir.path().join("cache-good"))
            .env("JETSWEEP_TOKEN", "s3cret-s3cret-s3cret")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Proc { child, log }
    };
    let out = Command::new(coordinator_bin())
        .args([
            "watch",
            &sweep_id,
            "--coordinator",
            &url,
            "--token",
            "s3cret-s3cret-s3cret",
        ])
        .env_remove("JETSWEEP_TOKEN")
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // Its stderr is a pipe, not a terminal: progress comes as lines (a Slurm log shows them), the
    // last one when the sweep ended.
    assert!(
        stderr.contains(&format!("{sweep_id}: 24/24 trial-epochs · 8 jobs: 8 done")),
        "{stderr}"
    );
    let out = Command::new(coordinator_bin())
        .args([
            "results",
            &sweep_id,
            "--format",
            "csv",
            "--coordinator",
            &url,
        ])
        .env("JETSWEEP_TOKEN", "s3cret-s3cret-s3cret")
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(
        out.status.success() && stdout.lines().count() > 1,
        "{stdout}\n{stderr}"
    );
}

/// Logs as an operator reads them: with `--log-format json` every line of both processes is a JSON
/// object, and one job can be followed from the coordinator's lease to the worker's start and end
/// by its ids (the worker's lines carry sweep, job, lease and attempt; the coordinator's, at debug,
/// job, lease and worker).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_job_can_be_followed_through_both_logs() {
    let dir = tempfile::tempdir().unwrap();
    let (mut coord, url) = coordinator_env(
        dir.path(),
        "127.0.0.1:0",
        "a",
        &["--log-format", "json"],
        &[("JETSWEEP_LOG", "info,jetsweep_coordinator=debug")],
    );
    let sweep_id = submit(&url, QUICK).await.sweep_id;
    let mut w = worker_with(dir.path(), &url, "1", &["--log-format", "json"]);
    wait_for(&url, &sweep_id, LONG, "the sweep to finish", finished).await;
    w.kill();
    coord.kill();
    let lines = |path: &std::path::Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
            .collect()
    };
    let (coordinator_log, worker_log) = (lines(&coord.log), lines(&w.log));
    let message = |l: &serde_json::Value| l["fields"]["message"].as_str().unwrap_or("").to_string();
    let done: Vec<&serde_json::Value> = worker_log
        .iter()
        .filter(|l| message(l) == "job done")
        .collect();
    assert_eq!(done.len(), 8, "one `job done` per job");
    for line in done {
        let span = &line["span"];
        assert_eq!(span["sweep"], sweep_id.as_str(), "{line}");
        assert_eq!(span["attempt"], 1, "{line}");
        assert!(line["fields"]["seconds"].is_number(), "{line}");
        let (job, lease) = (
            span["job"].as_str().unwrap(),
            span["lease"].as_str().unwrap(),
        );
        assert!(
            worker_log
                .iter()
                .any(|l| message(l) == "job started" && l["span"]["job"] == job),
            "no start line for {job}"
        );
        assert!(
            coordinator_log.iter().any(|l| message(l) == "job leased"
                && l["fields"]["job"] == job
                && l["fields"]["lease"] == lease
                && l["fields"]["sweep"] == sweep_id.as_str()),
            "the coordinator's log has no lease line for {job} / {lease}"
        );
    }
    assert!(
        coordinator_log
            .iter()
            .any(|l| message(l) == "sweep submitted" && l["fields"]["sweep"] == sweep_id.as_str())
    );
}

/// Sixteen jsc-tiny trials, two packs of eight on two workers: a few seconds each.
const PACKED: &str = "name = \"packed\"\ndataset = \"synthetic:100000\"\nlease_timeout_s = 30\n[defaults]\nmax_epochs = 30\nbatch_size = 64\n[grid]\nlearning_rate = [1e-3, 3e-3]\nseed = [0, 1, 2, 3, 4, 5, 6, 7]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_packs_jobs_share_its_time_so_their_seconds_add_up_to_the_workers_time() {
    // Each job is charged its share of its pack's epochs, not the whole pack's time: the jobs'
    // seconds summed come within 20 % of the workers' wall time (two workers, busy throughout).
    let dir = tempfile::tempdir().unwrap();
    let (_coord, url) = coordinator(dir.path(), "127.0.0.1:0", "packed");
    let id = submit(&url, PACKED).await.sweep_id;
    let _workers: Vec<_> = (0..2)
        .map(|i| worker_with(dir.path(), &url, &format!("w{i}"), &["--pack", "8"]))
        .collect();
    wait_for(&url, &id, LONG, "the first lease", |s, _| s.leased > 0).await;
    let leased = std::time::Instant::now();
    wait_for(&url, &id, LONG, "the sweep to finish", |s, _| s.done == 16).await;
    let wall = 2.0 * leased.elapsed().as_secs_f64();
    let jobs = jobs(&url, &id).await;
    let summed: f64 = jobs
        .iter()
        .map(|j| j.summary.as_ref().expect("a summary").train_seconds)
        .sum();
    eprintln!("packed: jobs' seconds {summed:.2} s, workers' time {wall:.2} s");
    assert!(
        (summed - wall).abs() <= 0.2 * wall,
        "the jobs' seconds add up to {summed:.2} s; the two workers' time is {wall:.2} s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_fails_for_a_cancelled_sweep() {
    // A script waiting on `watch` must not take a cancelled sweep for a finished one.
    let dir = tempfile::tempdir().unwrap();
    let (_coord, url) = coordinator(dir.path(), "127.0.0.1:0", "watch-cancel");
    let id = submit(&url, QUICK).await.sweep_id;
    client(&url).await.cancel(&id).await.unwrap();
    let out = std::process::Command::new(coordinator_bin())
        .args(["watch", &id, "--coordinator", &url])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("8 of 8 jobs") && stderr.contains("the sweep was cancelled"),
        "{stderr}"
    );
}

#[test]
fn run_reads_a_relative_dataset_path_from_the_sweep_files_folder() {
    // sub/jets (prepared .npy files) named as "jets" in sub/sweep.toml, run from the folder above.
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    let out = std::process::Command::new(jetsweep_tests::bins::worker_bin())
        .args(["prepare", "--dataset", "synthetic:3000", "--out"])
        .arg(sub.join("jets"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out).1);
    std::fs::write(
        sub.join("sweep.toml"),
        "name = \"relative\"\ndataset = \"jets\"\n[defaults]\nmax_epochs = 1\n[grid]\nseed = [0, 1]\n",
    )
    .unwrap();
    let out = std::process::Command::new(coordinator_bin())
        .args(["run", "sub/sweep.toml", "--workers", "1"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("sub/jets"),
        "the data line names the file it read: {stdout}"
    );
}

/// `run` refuses a bad sweep file and an address off loopback before it makes anything: no state
/// folder, no log, the error printed once.
#[test]
fn run_refuses_a_bad_file_or_an_outside_address_before_making_anything() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.toml"),
        "name = \"bad\"\ndataset = \"synthetic:1000\"\n[grid]\nlearning_rate = [0]\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("good.toml"),
        "name = \"good\"\ndataset = \"synthetic:1000\"\n",
    )
    .unwrap();
    for (args, says) in [
        (&["run", "bad.toml"][..], "learning_rate = 0"),
        (
            &["run", "good.toml", "--listen", "0.0.0.0:8080"][..],
            "loopback only",
        ),
        (&["run", "missing.toml"][..], "cannot read missing.toml"),
    ] {
        let out = std::process::Command::new(coordinator_bin())
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        let (_, stderr) = text(&out);
        assert!(!out.status.success(), "{args:?}");
        assert_eq!(
            stderr.matches(says).count(),
            1,
            "{args:?}: said once: {stderr}"
        );
        assert!(
            !dir.path().join("jetsweep-state").exists(),
            "{args:?} made the state folder"
        );
    }
}
