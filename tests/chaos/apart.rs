//! Hosts that are really apart: the coordinator and three workers each in a network namespace of
//! its own, with its own address, on one segment ([`crate::lan`]), over TLS with a token. The same
//! sweep runs four times: on loopback (one host); across the namespaces joined by a Linux bridge;
//! joined by the test's own switch on clean links (what the switch itself costs); and by that
//! switch with every link delaying frames by 20–50 ms and losing 1 % of them (the kernel here has
//! no netem to put on the bridge's links). Each run must end with
//! every job done exactly once; the summary gives each run's throughput (jobs/s from submission to
//! the last result) and lease latency (p50/p99 of the workers' calls that brought a lease: LeaseJobs
//! and CompleteJob asking for the next job, as each worker timed them).
//!
//! Jobs are short (jsc-tiny, 4,000 jets, 2 epochs) and run one at a time (`--pack 1`), so each costs
//! a lease round trip: the network is what is measured. Needs root, `ip` and /dev/net/tun.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use jetsweep_tests::bins::{coordinator_bin, worker_bin};

use crate::common::*;
use crate::lan::{Lan, Link, Wiring};

const WORKERS: usize = 3;
const TOKEN: &str = "apart-0123456789abcdef0123456789";

fn sweep(jobs: usize) -> String {
    let seeds: Vec<String> = (0..jobs).map(|s| s.to_string()).collect();
    format!(
        "name = \"apart\"\ndataset = \"synthetic:4000\"\nlease_timeout_s = 10\n[defaults]\nmodel = \"jsc-tiny\"\nmax_epochs = 2\nbatch_size = 256\nlearning_rate = 1e-3\n[grid]\nseed = [{}]\n",
        seeds.join(", ")
    )
}

/// Where the processes run: host 0 is the coordinator's, 1..=3 the workers'.
enum Hosts {
    Loopback,
    Lan(Lan),
}

impl Hosts {
    fn ip(&self, i: usize) -> &str {
        match self {
            Hosts::Loopback => "127.0.0.1",
            Hosts::Lan(lan) => lan.ip(i),
        }
    }

    fn command(&self, i: usize, program: &Path) -> Command {
        match self {
            Hosts::Loopback => Command::new(program),
            Hosts::Lan(lan) => lan.command(i, program),
        }
    }
}

/// One run's figures.
struct Figures {
    jobs_per_s: f64,
    lease_p50_ms: f64,
    lease_p99_ms: f64,
    lease_calls: usize,
}

impl std::fmt::Display for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.1} jobs/s, lease p50 {:.1} ms p99 {:.1} ms ({} calls)",
            self.jobs_per_s, self.lease_p50_ms, self.lease_p99_ms, self.lease_calls
        )
    }
}

pub async fn run(size: Size) -> Outcome {
    let jobs = match size {
        Size::Short => 60,
        Size::Full => 240,
    };
    let netem = Link {
        delay: (Duration::from_millis(20), Duration::from_millis(50)),
        loss: 0.01,
    };
    let mut lines = Vec::new();
    for (name, wiring) in [
        ("loopback", None),
        ("namespaces on a Linux bridge", Some(Wiring::Bridge)),
        (
            "namespaces on the test's switch",
            Some(Wiring::Switch(Link::CLEAN)),
        ),
        (
            "the switch with 20-50 ms, 1% loss",
            Some(Wiring::Switch(netem)),
        ),
    ] {
        let hosts = match wiring {
            None => Hosts::Loopback,
            Some(wiring) => match Lan::create(1 + WORKERS, wiring) {
                Ok(lan) => Hosts::Lan(lan),
                Err(e) => {
                    return Outcome::Skipped(format!(
                        "cannot make network namespaces and TAP devices here ({e}); run as root with iproute2"
                    ));
                }
            },
        };
        match measure(&hosts, jobs).await {
            Ok(figures) => lines.push(format!("{name}: {figures}")),
            Err(why) => return Outcome::Failed(format!("{name}: {why}")),
        }
    }
    Outcome::Passed(format!(
        "{jobs} jobs, {WORKERS} workers, TLS + token, every result once each run; {}",
        lines.join("; ")
    ))
}

async fn measure(hosts: &Hosts, jobs: usize) -> Checked<Figures> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let d = dir.path();
    jetsweep_tests::certs::make_certificates(d, &[hosts.ip(0)])?;
    let ca = d.join("ca.pem");
    let state = d.join("state.db");
    let mut serve = hosts.command(0, coordinator_bin());
    serve
        .args([
            "serve",
            "--listen",
            &format!("{}:0", hosts.ip(0)),
            "--state",
        ])
        .arg(&state)
        .arg("--tls-cert")
        .arg(d.join("server.pem"))
        .arg("--tls-key")
        .arg(d.join("server.key"))
        .env("JETSWEEP_TOKEN", TOKEN);
    let (_coordinator, url) = spawn_coordinator(serve, d.join("coordinator.log"));
    let mut workers = Vec::new();
    for i in 1..=WORKERS {
        let log = d.join(format!("worker-{i}.log"));
        let child = hosts
            .command(i, worker_bin())
            .args(["--coordinator", &url, "--slots", "1", "--pack", "1"])
            .args(["--log-format", "json", "--ca"])
            .arg(&ca)
            .arg("--cache-dir")
            .arg(d.join(format!("cache-{i}")))
            .env("JETSWEEP_TOKEN", TOKEN)
            .env("JETSWEEP_LOG", "info,jetsweep_worker::agent=debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).map_err(|e| e.to_string())?)
            .spawn()
            .map_err(|e| e.to_string())?;
        workers.push(Proc { child, log });
    }
    poll(
        Duration::from_secs(60),
        "the workers to register",
        || async { registered(&state).filter(|n| *n == WORKERS as u32) },
    )
    .await?;

    let file = d.join("sweep.toml");
    std::fs::write(&file, sweep(jobs)).map_err(|e| e.to_string())?;
    let start = Instant::now();
    let submitted = hosts
        .command(0, coordinator_bin())
        .arg("submit")
        .arg(&file)
        .args(["--coordinator", &url, "--ca"])
        .arg(&ca)
        .env("JETSWEEP_TOKEN", TOKEN)
        .output()
        .map_err(|e| e.to_string())?;
    check(submitted.status.success(), || {
        format!(
            "submit failed: {}",
            String::from_utf8_lossy(&submitted.stderr)
        )
    })?;
    let l = poll(Duration::from_secs(300), "every job to be done", || async {
        ledger(&state)
            .ok()
            .filter(|l| l.done + l.failed >= jobs as u32)
    })
    .await
    .map_err(|e| format!("{e}; worker 1 said: {}", log_tail(&workers[0].log, 5)))?;
    let seconds = start.elapsed().as_secs_f64();
    check(
        l.done == jobs as u32 && l.attempts_done == jobs as u32 && l.duplicated == 0,
        || format!("not every job done exactly once: {l:?}"),
    )?;

    let mut took_ms = Vec::new();
    for w in &workers {
        took_ms.extend(lease_round_trips(&w.log));
    }
    check(!took_ms.is_empty(), || {
        "no lease round trips in the workers' logs".into()
    })?;
    took_ms.sort_by(f64::total_cmp);
    let at = |q: f64| took_ms[((took_ms.len() - 1) as f64 * q).round() as usize];
    Ok(Figures {
        jobs_per_s: jobs as f64 / seconds,
        lease_p50_ms: at(0.5),
        lease_p99_ms: at(0.99),
        lease_calls: took_ms.len(),
    })
}

/// Workers the state file knows.
fn registered(state: &Path) -> Option<u32> {
    let db =
        rusqlite::Connection::open_with_flags(state, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .ok()?;
    db.query_row("SELECT COUNT(*) FROM workers", [], |r| r.get(0))
        .ok()
}

/// The milliseconds of each "lease round trip" a worker logged (JSON lines) that brought a lease.
fn lease_round_trips(log: &Path) -> Vec<f64> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|v| {
            let fields = v.get("fields")?;
            (fields.get("message")?.as_str()? == "lease round trip"
                && fields.get("leases")?.as_u64()? > 0)
                .then(|| fields.get("took_us")?.as_f64().map(|us| us / 1000.0))
                .flatten()
        })
        .collect()
}
