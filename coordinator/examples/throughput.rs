//! Benchmark: coordinator throughput with simulated workers doing no-op jobs over real gRPC on
//! loopback. The coordinator runs in a child process of its own (as it would on its own machine);
//! each simulated worker has its own connection and runs one job at a time, each job one epoch.
//!
//!     cargo run --release -p jetsweep-coordinator --example throughput -- [--separate] [--rate R] [--state-dir DIR] [JOBS] [WORKERS...]
//!     cargo run --release -p jetsweep-coordinator --example throughput -- 10000 10 100 1000
//!     cargo run --release -p jetsweep-coordinator --example throughput -- --rate 10000 20000 100
//!
//! Default (what `jetsweep-worker` does for a one-epoch job): the epoch rides with the completion and
//! the completion leases the next job, one call per job. `--separate`: three calls per job
//! (LeaseJobs, ReportEpoch, CompleteJob). Either way every job is leased, its epoch stored, its result
//! stored, each committed before the reply. Prints jobs/s and p50/p99 latency of the calls that hand
//! out leases.
//!
//! Without `--rate` every worker calls again the moment it is answered, so the coordinator is
//! saturated and latency is mostly queueing (100 workers at N jobs/s wait about 100/N s each). With
//! `--rate R` each job "trains" for WORKERS/R seconds on average (0.5-1.5x, so trials end at
//! scattered times), so the workers offer about R jobs/s in all: latency at that load.
//! `--state-dir` puts the coordinator's state file there (`/dev/shm` takes the disk out of it).
//! The clock starts a second after the submit, once the coordinator has checkpointed it.

/// The same allocator as the `jetsweep` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use jetsweep_coordinator::server::{Coordinator, serve};
use jetsweep_coordinator::store::Store;
use jetsweep_proto::PROTOCOL_VERSION;
use jetsweep_proto::auth::{Channel, ClientToken};
use jetsweep_proto::v1 as pb;
use jetsweep_proto::v1::sweep_service_client::SweepServiceClient;
use jetsweep_proto::v1::worker_service_client::WorkerServiceClient;

/// Pause between the submit and the first lease.
const SETTLE: Duration = Duration::from_secs(1);

/// Set in the child process that runs the coordinator: the folder for its state file ("" for the
/// system's temporary folder).
const SERVE_ENV: &str = "JETSWEEP_BENCH_SERVE";

/// The child: a coordinator on a fresh state file; prints its URL, serves until stdin closes.
async fn serve_child() {
    let dir = match std::env::var_os(SERVE_ENV).filter(|d| !d.is_empty()) {
        Some(parent) => tempfile::tempdir_in(parent).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    let store = Store::open(&dir.path().join("state.db")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("http://{}", listener.local_addr().unwrap());
    let coordinator = Coordinator::new(
        store,
        dir.path().to_path_buf(),
        jetsweep_coordinator::clock::system(),
    )
    .unwrap();
    let stdin_closed = tokio::task::spawn_blocking(|| {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
    });
    serve(listener, coordinator, Default::default(), async {
        let _ = stdin_closed.await;
    })
    .await
    .unwrap();
}

fn epoch() -> pb::EpochMetrics {
    pb::EpochMetrics {
        epoch: 1,
        test_acc: 0.5,
        ..Default::default()
    }
}

/// A fresh request id per call, as the real worker sends (the coordinator remembers each grant).
fn request_id() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    format!(
        "r{}",
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

const RESULT: pb::TrialResult = pb::TrialResult {
    params: 117,
    test_acc: 0.5,
    best_epoch: 1,
    best_test_acc: 0.5,
};

/// Connects and registers, retrying as a real worker does (a thousand simultaneous connects
/// overflow the accept queue).
async fn join(url: &str, w: usize) -> (WorkerServiceClient<Channel>, String) {
    loop {
        let attempt = async {
            let channel = tonic::transport::Channel::from_shared(url.to_string())
                .unwrap()
                .connect()
                .await
                .map_err(|e| e.to_string())?;
            let mut c = WorkerServiceClient::new(ClientToken::default().wrap(channel));
            let reg = pb::RegisterRequest {
                protocol_version: PROTOCOL_VERSION,
                host: format!("sim{w}"),
                device: "cpu".into(),
                slots: 1,
            };
            let id = c
                .register(reg)
                .await
                .map_err(|e| e.to_string())?
                .into_inner()
                .worker_id;
            Ok::<_, String>((c, id))
        };
        match attempt.await {
            Ok(ok) => return ok,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// One simulated worker until the queue is empty; returns the latencies of its lease-granting calls.
async fn simulate(
    mut c: WorkerServiceClient<Channel>,
    id: String,
    separate: bool,
    train: Option<Duration>,
) -> Vec<Duration> {
    // Trials end at scattered times, not in lockstep: each lasts 0.5-1.5x the mean (xorshift).
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ hash(&id);
    let mut next_spread = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        0.5 + (x >> 11) as f64 / (1u64 << 53) as f64
    };
    // Paced workers join at scattered times too, as real ones do, not all in the same millisecond.
    if let Some(train) = train {
        tokio::time::sleep(train.mul_f64(next_spread() - 0.5)).await;
    }
    let mut latencies = Vec::new();
    let t = Instant::now();
    let mut lease = c
        .lease_jobs(pb::LeaseJobsRequest {
            pack_size: 1,
            worker_id: id.clone(),
            slots: 1,
            request_id: request_id(),
        })
        .await
        .unwrap()
        .into_inner()
        .packs
        .into_iter()
        .flat_map(|p| p.leases)
        .collect::<Vec<_>>()
        .pop();
    latencies.push(t.elapsed());
    while let Some(l) = lease {
        if let Some(train) = train {
            tokio::time::sleep(train.mul_f64(next_spread())).await;
        }
        let t;
        if separate {
            c.report_epoch(pb::ReportEpochRequest {
                lease_id: l.lease_id.clone(),
                epochs: vec![epoch()],
                worker_id: id.clone(),
                checkpoint: None,
            })
            .await
            .unwrap();
            c.complete_job(pb::CompleteJobRequest {
                lease_id: l.lease_id,
                result: Some(RESULT),
                worker_id: id.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
            t = Instant::now();
            lease = c
                .lease_jobs(pb::LeaseJobsRequest {
                    pack_size: 1,
                    worker_id: id.clone(),
                    slots: 1,
                    request_id: request_id(),
                })
                .await
                .unwrap()
                .into_inner()
                .packs
                .into_iter()
                .flat_map(|p| p.leases)
                .collect::<Vec<_>>()
                .pop();
        } else {
            t = Instant::now();
            lease = c
                .complete_job(pb::CompleteJobRequest {
                    pack_size: 1,
                    lease_id: l.lease_id,
                    result: Some(RESULT),
                    epochs: vec![epoch()],
                    slots: 1,
                    worker_id: id.clone(),
                    // As the real worker does: a retry would get the same next lease.
                    request_id: request_id(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .packs
                .into_iter()
                .flat_map(|p| p.leases)
                .collect::<Vec<_>>()
                .pop();
        }
        latencies.push(t.elapsed());
    }
    latencies
}

fn hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

async fn run_once(
    jobs: usize,
    workers: usize,
    separate: bool,
    rate: Option<f64>,
    state_dir: &str,
) -> Run {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(SERVE_ENV, state_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut url = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut url)
        .unwrap();
    let url = url.trim().to_string();

    let seeds: Vec<String> = (0..jobs).map(|s| s.to_string()).collect();
    let toml = format!(
        "name = \"bench\"\ndataset = \"synthetic:1000\"\n[defaults]\nmax_epochs = 1\n[grid]\nseed = [{}]\n",
        seeds.join(",")
    );
    let channel = tonic::transport::Channel::from_shared(url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    SweepServiceClient::new(ClientToken::default().wrap(channel))
        .submit_sweep(pb::SubmitSweepRequest {
            sweep_toml: toml.into(),
        })
        .await
        .unwrap();
    let mut joined = Vec::new();
    for w in 0..workers {
        let url = url.clone();
        joined.push(tokio::spawn(async move { join(&url, w).await }));
    }
    let mut clients = Vec::new();
    for j in joined {
        clients.push(j.await.unwrap());
    }

    // Let the coordinator copy the submit's WAL (tens of MB for 20,000 jobs) into its main file
    // first: that happens once per submit and is not what a lease costs.
    tokio::time::sleep(SETTLE).await;
    let train = rate.map(|r| Duration::from_secs_f64(workers as f64 / r));
    let start = Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|(c, id)| tokio::spawn(simulate(c, id, separate, train)))
        .collect();
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    let elapsed = start.elapsed().as_secs_f64();
    // The coordinator stops once its connections close, which this runtime must keep serving.
    drop(child.stdin.take());
    let _ = tokio::task::spawn_blocking(move || child.wait()).await;
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p) as usize];
    Run {
        jobs_per_s: jobs as f64 / elapsed,
        p50: pct(0.5),
        p90: pct(0.9),
        p99: pct(0.99),
        max: pct(1.0),
    }
}

/// What one run measured: throughput, and the latency of the calls that hand out leases.
struct Run {
    jobs_per_s: f64,
    p50: Duration,
    p90: Duration,
    p99: Duration,
    max: Duration,
}

fn main() {
    if std::env::var_os(SERVE_ENV).is_some() {
        // The coordinator as `jetsweep serve` runs it: a runtime thread per core.
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(serve_child());
        return;
    }
    // The simulated workers stand in for other machines: one thread, so they take as little of
    // this machine's two cores from the coordinator as they can.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    const USAGE: &str =
        "usage: throughput [--separate] [--rate JOBS_PER_S] [--state-dir DIR] [JOBS] [WORKERS...]";
    let mut separate = false;
    let mut state_dir = String::new();
    let mut rate = None;
    let mut args = Vec::new();
    let mut argv = std::env::args().skip(1);
    while let Some(a) = argv.next() {
        match a.as_str() {
            "--separate" => separate = true,
            "--rate" => {
                rate = Some(
                    argv.next()
                        .and_then(|r| r.parse::<f64>().ok())
                        .expect(USAGE),
                )
            }
            "--state-dir" => state_dir = argv.next().expect(USAGE),
            n => args.push(n.parse::<usize>().expect(USAGE)),
        }
    }
    let jobs = args.first().copied().unwrap_or(5000);
    let worker_counts = if args.len() > 1 {
        args[1..].to_vec()
    } else {
        vec![10, 100, 1000]
    };
    let calls = if separate {
        "3 calls per job"
    } else {
        "1 call per job"
    };
    let offered = rate.map_or("as fast as answered".to_string(), |r| {
        format!("{r:.0} jobs/s")
    });
    println!(
        "| workers | jobs | pattern | offered | jobs/s | lease p50 | p90 | p99 | max |\n|---|---|---|---|---|---|---|---|---|"
    );
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    for workers in worker_counts {
        let r = runtime.block_on(run_once(jobs, workers, separate, rate, &state_dir));
        println!(
            "| {workers} | {jobs} | {calls} | {offered} | {:.0} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms |",
            r.jobs_per_s,
            ms(r.p50),
            ms(r.p90),
            ms(r.p99),
            ms(r.max)
        );
    }
}
