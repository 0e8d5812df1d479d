//! Benchmark: coordinator throughput with simulated workers doing no-op jobs over real gRPC on loopback.
//! Each simulated worker has its own connection and loops lease(1) → report one epoch → complete.
//!
//!     cargo run --release -p jetsweep-coordinator --example throughput -- [JOBS] [WORKERS...]
//!     cargo run --release -p jetsweep-coordinator --example throughput -- 5000 10 100 1000
//!
//! Prints jobs/s (lease + report + complete) and p50/p99 lease latency for each worker count.

use std::time::{Duration, Instant};

use jetsweep_coordinator::server::{Coordinator, serve};
use jetsweep_coordinator::store::Store;
use jetsweep_proto::PROTOCOL_VERSION;
use jetsweep_proto::v1 as pb;
use jetsweep_proto::v1::sweep_service_client::SweepServiceClient;
use jetsweep_proto::v1::worker_service_client::WorkerServiceClient;
use tonic::transport::Channel;

async fn run_once(jobs: usize, workers: usize) -> (f64, Duration, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("state.db")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(
        listener,
        Coordinator::new(store, dir.path().to_path_buf()).unwrap(),
        async {
            let _ = stopped.await;
        },
    ));
    let seeds: Vec<String> = (0..jobs).map(|s| s.to_string()).collect();
    let toml = format!(
        "name = \"bench\"\ndataset = \"synthetic:1000\"\n[grid]\nseed = [{}]\n",
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

    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..workers {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            // A thousand simultaneous connects overflow the accept queue: retry as a real worker does.
            let (mut c, id) = loop {
                let attempt = async {
                    let channel = Channel::from_shared(url.clone())
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
                    Ok(ok) => break ok,
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            };
            let mut latencies = Vec::new();
            loop {
                let t = Instant::now();
                let leases = c
                    .lease_jobs(pb::LeaseJobsRequest {
                        worker_id: id.clone(),
                        max_jobs: 1,
                    })
                    .await
                    .unwrap()
                    .into_inner()
                    .leases;
                latencies.push(t.elapsed());
                let Some(lease) = leases.into_iter().next() else {
                    return latencies;
                };
                let metrics = pb::EpochMetrics {
                    epoch: 1,
                    test_acc: 0.5,
                    ..Default::default()
                };
                c.report_epoch(pb::ReportEpochRequest {
                    lease_id: lease.lease_id.clone(),
                    metrics: Some(metrics),
                })
                .await
                .unwrap();
                let result = pb::TrialResult {
                    params: 117,
                    test_acc: 0.5,
                    best_epoch: 1,
                    best_test_acc: 0.5,
                };
                c.complete_job(pb::CompleteJobRequest {
                    lease_id: lease.lease_id,
                    result: Some(result),
                })
                .await
                .unwrap();
            }
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    let elapsed = start.elapsed().as_secs_f64();
    let _ = stop.send(());
    let _ = server.await;
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p) as usize];
    (jobs as f64 / elapsed, pct(0.5), pct(0.99))
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("numbers: JOBS WORKERS..."))
        .collect();
    let jobs = args.first().copied().unwrap_or(2000);
    let worker_counts = if args.len() > 1 {
        args[1..].to_vec()
    } else {
        vec![10, 100, 1000]
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!("| workers | jobs | jobs/s | lease p50 | lease p99 |\n|---|---|---|---|---|");
    for workers in worker_counts {
        let (rate, p50, p99) = runtime.block_on(run_once(jobs, workers));
        println!(
            "| {workers} | {jobs} | {rate:.0} | {:.2} ms | {:.2} ms |",
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3
        );
    }
}
