//! Real coordinator and worker processes on loopback, and a gRPC client to ask them how things are.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use jetsweep_coordinator::client::SweepClient;
use jetsweep_proto::v1 as pb;

use crate::bins::{coordinator_bin, worker_bin};

/// A child process killed (SIGKILL) when dropped; its log is printed if the test fails.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "---- {} ----\n{}",
                self.log.display(),
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

/// Starts `jetsweep serve` on `listen` with its state in `dir`; returns it and its URL.
pub fn coordinator(dir: &Path, listen: &str, tag: &str) -> (Proc, String) {
    coordinator_with(dir, listen, tag, &[])
}

/// [`coordinator`] with more arguments for `jetsweep serve`.
pub fn coordinator_with(dir: &Path, listen: &str, tag: &str, extra: &[&str]) -> (Proc, String) {
    coordinator_env(dir, listen, tag, extra, &[])
}

/// [`coordinator_with`] with environment variables set for it.
pub fn coordinator_env(
    dir: &Path,
    listen: &str,
    tag: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (Proc, String) {
    let mut command = Command::new(coordinator_bin());
    command
        .args(["serve", "--listen", listen, "--state"])
        .arg(dir.join("state.db"))
        .args(extra)
        .env_remove("JETSWEEP_TOKEN")
        .envs(env.iter().copied());
    spawn_coordinator(command, dir.join(format!("coordinator-{tag}.log")))
}

/// Starts `command` (a `jetsweep serve` command line, perhaps behind `ip netns exec`), its log in
/// `log`, and waits for the address it serves on; returns it and that URL.
pub fn spawn_coordinator(mut command: Command, log: PathBuf) -> (Proc, String) {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(
        line.starts_with("http://") || line.starts_with("https://"),
        "coordinator did not start: {line:?}\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    (Proc { child, log }, line.trim().to_string())
}

/// Starts `jetsweep-worker --coordinator URL` with its own dataset cache.
/// A worker that runs one job at a time (`--pack 1`), so that a test can follow single jobs;
/// packing has tests of its own ([`worker_with`] and `--pack K`).
pub fn worker(dir: &Path, url: &str, tag: &str) -> Proc {
    worker_with(dir, url, tag, &["--pack", "1"])
}

/// [`worker`] with more arguments.
pub fn worker_with(dir: &Path, url: &str, tag: &str, extra: &[&str]) -> Proc {
    let log = dir.join(format!("worker-{tag}.log"));
    let child = Command::new(worker_bin())
        .args(["--coordinator", url, "--slots", "1", "--cache-dir"])
        .arg(dir.join(format!("cache-{tag}")))
        .args(extra)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    Proc { child, log }
}

/// The typed client of the coordinator at `url` (no token, plain HTTP).
pub async fn client(url: &str) -> SweepClient {
    SweepClient::connect(url, None, None).await.unwrap()
}

pub async fn submit(url: &str, toml: &str) -> pb::SweepView {
    client(url).await.submit(toml).await.unwrap()
}

/// The workers the coordinator lists.
pub async fn workers(url: &str) -> Vec<pb::WorkerView> {
    client(url).await.workers().await.unwrap()
}

/// Every job of the sweep, in grid order.
pub async fn jobs(url: &str, sweep: &str) -> Vec<pb::JobView> {
    client(url).await.jobs(sweep).await.unwrap()
}

pub async fn sweep(url: &str, sweep: &str) -> pb::SweepView {
    client(url).await.sweep(sweep).await.unwrap()
}

/// Polls until `done` holds for the sweep, or panics after `limit`.
pub async fn wait_for(
    url: &str,
    id: &str,
    limit: Duration,
    what: &str,
    done: impl Fn(&pb::SweepView, &[pb::JobView]) -> bool,
) {
    let start = Instant::now();
    loop {
        if let Ok(mut c) = SweepClient::connect(url, None, None).await
            && let (Ok(s), Ok(j)) = (c.sweep(id).await, c.jobs(id).await)
            && done(&s, &j)
        {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn state(j: &pb::JobView) -> pb::JobState {
    pb::JobState::try_from(j.state).unwrap()
}

/// Sends `sig` to a child process.
pub fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) on a process this program started; no memory is passed.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}
