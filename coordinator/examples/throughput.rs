//! Benchmark: coordinator throughput with simulated workers doing no-op jobs over real gRPC on
//! loopback. The coordinator runs in a child process of its own (as it would on its own machine);
//! each simulated worker has its own connection and runs one job at a time, each job one epoch.
//!
//!     cargo run --release -p jetsweep-coordinator --example throughput -- [--separate] [JOBS] [WORKERS...]
//!     cargo run --release -p jetsweep-coordinator --example throughput -- 5000 10 100 1000
//!
//! Default (what `jetsweep-worker` does for a one-epoch job): the epoch rides with the completion and
//! the completion leases the next job, one call per job. `--separate`: three calls per job
//! (LeaseJobs, ReportEpoch, CompleteJob). Either way every job is leased, its epoch stored, its result
//! stored, each committed before the reply. Prints jobs/s and p50/p99 latency of the calls that hand
//! out leases.

/// The same allocator as the `jetsweep` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use jetsweep_coordinator::server::{Coordinator, serve};
use jetsweep_coordinator::store::Store;
use jetsweep_proto::PROTOCOL_VERSION;
use jetsweep_proto::v1 as pb;
use jetsweep_proto::v1::sweep_service_client::SweepServiceClient;
use jetsweep_proto::v1::worker_service_client::WorkerServiceClient;
use tonic::transport::Channel;

/// Set in the child process that runs the coordinator.
const SERVE_ENV: &str = "JETSWEEP_BENCH_SERVE";

/// The child: a coordinator on a fresh state file; prints its URL, serves until stdin closes.
async fn serve_child() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("state.db")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("http://{}", listener.local_addr().unwrap());
    let coordinator = Coordinator::new(store, dir.path().to_path_buf()).unwrap();
    let stdin_closed = tokio::task::spawn_blocking(|| {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
    });
    serve(listener, coordinator, async {
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
            let channel = Channel::from_shared(url.to_string())
                .unwrap()
                .connect()
                .await
                .map_err(|e| e.to_string())?;
            let mut c = WorkerServiceClient::new(channel);
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
) -> Vec<Duration> {
    let mut latencies = Vec::new();
    let t = Instant::now();
    let mut lease = c
        .lease_jobs(pb::LeaseJobsRequest {
            worker_id: id.clone(),
            max_jobs: 1,
        })
        .await
        .unwrap()
        .into_inner()
        .leases
        .pop();
    latencies.push(t.elapsed());
    while let Some(l) = lease {
        let t;
        if separate {
            c.report_epoch(pb::ReportEpochRequest {
                lease_id: l.lease_id.clone(),
                epochs: vec![epoch()],
            })
            .await
            .unwrap();
            c.complete_job(pb::CompleteJobRequest {
                lease_id: l.lease_id,
                result: Some(RESULT),
                ..Default::default()
            })
            .await
            .unwrap();
            t = Instant::now();
            lease = c
                .lease_jobs(pb::LeaseJobsRequest {
                    worker_id: id.clone(),
                    max_jobs: 1,
                })
                .await
                .unwrap()
                .into_inner()
                .leases
                .pop();
        } else {
            t = Instant::now();
            lease = c
                .complete_job(pb::CompleteJobRequest {
                    lease_id: l.lease_id,
                    result: Some(RESULT),
                    epochs: vec![epoch()],
                    lease_next: 1,
                    worker_id: id.clone(),
                })
                .await
                .unwrap()
                .into_inner()
                .leases
                .pop();
        }
        latencies.push(t.elapsed());
    }
    latencies
}

async fn run_once(jobs: usize, workers: usize, separate: bool) -> (f64, Duration, Duration) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(SERVE_ENV, "1")
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
    let channel = Channel::from_shared(url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    SweepServiceClient::new(channel)
        .submit_sweep(pb::SubmitSweepRequest { sweep_toml: toml })
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

    let start = Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|(c, id)| tokio::spawn(simulate(c, id, separate)))
        .collect();
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    let elapsed = start.elapsed().as_secs_f64();
    drop(child.stdin.take());
    let _ = child.wait();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p) as usize];
    (jobs as f64 / elapsed, pct(0.5), pct(0.99))
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    if std::env::var_os(SERVE_ENV).is_some() {
        runtime.block_on(serve_child());
        return;
    }
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let separate = args.iter().any(|a| a == "--separate");
    args.retain(|a| a != "--separate");
    let args: Vec<usize> = args
        .iter()
        .map(|a| a.parse().expect("usage: [--separate] JOBS WORKERS..."))
        .collect();
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
    println!(
        "| workers | jobs | pattern | jobs/s | lease p50 | lease p99 |\n|---|---|---|---|---|---|"
    );
    for workers in worker_counts {
        let (rate, p50, p99) = runtime.block_on(run_once(jobs, workers, separate));
        println!(
            "| {workers} | {jobs} | {calls} | {rate:.0} | {:.2} ms | {:.2} ms |",
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3
        );
    }
}
