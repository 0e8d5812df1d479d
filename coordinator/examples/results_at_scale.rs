//! Benchmark: reading back the results of a sweep of 100,000 points (GetResults, every page) and
//! its jobs (ListJobs, every page), while
//! a worker keeps leasing and completing jobs of another sweep on the same coordinator.
//!
//!     cargo run --release -p jetsweep-coordinator --example results_at_scale -- [POINTS]
//!
//! The coordinator runs in this process (the test kit's: real gRPC on loopback, a real state file
//! in a temporary folder). POINTS grid points (batch size × learning rate, one seed each) are
//! submitted and completed through the worker service first; then the clock starts. Prints the
//! time to read every page, the time of the first page, and the lease latency the other worker saw
//! meanwhile (p50 / max); then the time of each JSON call the dashboard's page of that sweep makes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use jetsweep_coordinator::testkit::{TestCoordinator, http_get};
use jetsweep_proto::v1 as pb;

/// Completes every job the worker can lease until the queue is empty.
async fn complete_all(c: &mut TestCoordinator, worker: &str) -> usize {
    let mut done = 0;
    let mut leases = c.lease(worker, 64).await;
    while let Some(lease) = leases.pop() {
        let next = c
            .workers
            .complete_job(pb::CompleteJobRequest {
                lease_id: lease.lease_id,
                worker_id: worker.to_string(),
                result: Some(pb::TrialResult {
                    params: 117,
                    test_acc: 0.5 + (done % 100) as f64 / 1000.0,
                    best_epoch: 1,
                    best_test_acc: 0.5,
                }),
                epochs: vec![pb::EpochMetrics {
                    epoch: 1,
                    lr: 1e-3,
                    ..Default::default()
                }],
                slots: if leases.is_empty() { 64 } else { 0 },
                ..Default::default()
            })
            .await
            .expect("completion accepted");
        leases.extend(
            next.into_inner()
                .packs
                .into_iter()
                .flat_map(|p| p.leases)
                .collect::<Vec<_>>(),
        );
        done += 1;
    }
    done
}

#[tokio::main]
async fn main() {
    let points: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("POINTS is a number"))
        .unwrap_or(100_000);
    let (batches, rates) = (points.div_ceil(100), 100);
    let dir = tempfile::tempdir().unwrap();
    let mut c = TestCoordinator::start(dir.path()).await;
    let grid = format!(
        "name = \"big\"\ndataset = \"synthetic:2000\"\nlease_timeout_s = 3600\n[defaults]\nmax_epochs = 1\n[grid]\nbatch_size = [{}]\nlearning_rate = [{}]\n",
        (1..=batches)
            .map(|b| b.to_string())
            .collect::<Vec<_>>()
            .join(","),
        (1..=rates)
            .map(|r| format!("{r}e-5"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let setup = Instant::now();
    let big = c.submit(&grid).await.sweep_id;
    let worker = c.register("filler", 64).await;
    let completed = complete_all(&mut c, &worker).await;
    eprintln!(
        "{completed} jobs submitted and completed in {:.1} s",
        setup.elapsed().as_secs_f64()
    );

    // Another sweep for a worker to lease from while the results are read.
    let other = "name = \"other\"\ndataset = \"synthetic:2000\"\nlease_timeout_s = 3600\n[defaults]\nmax_epochs = 1\n[grid]\nseed = [0, 1, 2, 3, 4, 5, 6, 7]\n";
    let mut seeds = String::from("[grid]\nseed = [");
    seeds.push_str(
        &(0..20_000)
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(","),
    );
    seeds.push(']');
    c.submit(&other.replace("[grid]\nseed = [0, 1, 2, 3, 4, 5, 6, 7]\n", &seeds))
        .await;
    let reading = Arc::new(AtomicBool::new(true));
    let leaser = {
        let mut workers = c.workers.clone();
        let reading = reading.clone();
        let id = c.register("leaser", 1).await;
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            while reading.load(Ordering::SeqCst) {
                let start = Instant::now();
                let leases = workers
                    .lease_jobs(pb::LeaseJobsRequest {
                        pack_size: 1,
                        worker_id: id.clone(),
                        slots: 1,
                        request_id: String::new(),
                    })
                    .await
                    .unwrap()
                    .into_inner()
                    .packs
                    .into_iter()
                    .flat_map(|p| p.leases)
                    .collect::<Vec<_>>();
                latencies.push(start.elapsed());
                for l in leases {
                    workers
                        .complete_job(pb::CompleteJobRequest {
                            lease_id: l.lease_id,
                            worker_id: id.clone(),
                            result: Some(pb::TrialResult {
                                params: 117,
                                test_acc: 0.5,
                                best_epoch: 1,
                                best_test_acc: 0.5,
                            }),
                            ..Default::default()
                        })
                        .await
                        .unwrap();
                }
            }
            latencies
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;

    let start = Instant::now();
    let (mut token, mut rows, mut pages, mut first_page) = (String::new(), 0usize, 0, None);
    loop {
        let page = c
            .sweeps
            .get_results(pb::GetResultsRequest {
                sweep_id: big.clone(),
                page_size: 5000,
                page_token: token.clone(),
            })
            .await
            .expect("results page")
            .into_inner();
        first_page.get_or_insert(start.elapsed());
        rows += page.rows.len();
        pages += 1;
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    let all = start.elapsed();

    // And every job, a page (1,000) at a time.
    let jobs_start = Instant::now();
    let (mut token, mut listed) = (String::new(), 0usize);
    loop {
        let page = c
            .sweeps
            .list_jobs(pb::ListJobsRequest {
                sweep_id: big.clone(),
                page_size: 1000,
                page_token: token.clone(),
            })
            .await
            .expect("jobs page")
            .into_inner();
        listed += page.jobs.len();
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    let all_jobs = jobs_start.elapsed();

    // The dashboard's JSON calls for this sweep's page, as a browser makes them.
    // `/api/sweeps` twice: the second is what the list's next poll costs (activity kept).
    let mut calls = vec![
        format!("/api/sweeps/{big}"),
        "/api/sweeps".to_string(),
        "/api/sweeps".to_string(),
    ];
    let mut from = Some(0);
    while let Some(f) = from {
        let path = format!("/api/sweeps/{big}/jobs?from={f}");
        let body = http_get(&c.url, &path, None).1;
        calls.push(path);
        from = serde_json::from_str::<serde_json::Value>(&body).unwrap()["next"].as_u64();
    }
    calls.push(format!("/api/sweeps/{big}/curves?limit=60"));
    calls.push(format!("/api/sweeps/{big}/results"));
    let mut timed = Vec::new();
    for path in &calls {
        let start = Instant::now();
        let bytes = http_get(&c.url, path, None).1.len();
        timed.push((path.clone(), start.elapsed(), bytes));
    }
    reading.store(false, Ordering::SeqCst);
    let mut latencies = leaser.await.unwrap();
    latencies.sort();
    let p50 = latencies[latencies.len() / 2];
    let max = latencies.last().copied().unwrap_or_default();
    println!(
        "| points | result pages | all results | first page | jobs listed | all jobs | leases meanwhile | lease p50 | lease max |\n|---|---|---|---|---|---|---|---|---|\n| {rows} | {pages} | {:.2} s | {:.2} s | {listed} | {:.2} s | {} | {:.1} ms | {:.1} ms |",
        all.as_secs_f64(),
        first_page.unwrap().as_secs_f64(),
        all_jobs.as_secs_f64(),
        latencies.len(),
        p50.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3
    );
    println!("\n| dashboard call | time | bytes |\n|---|---|---|");
    for (path, took, bytes) in timed {
        println!("| {path} | {:.1} ms | {bytes} |", took.as_secs_f64() * 1e3);
    }
    // The whole page in headless Chromium, if there is one: wall time of a headless run that loads
    // the page and waits for its data, against the same for a page with no data (the browser's own
    // start-up), so the difference is what the sweep's size costs.
    // A still snapshot (`?live=0`: the live page's event stream never lets the browser settle),
    // its output to a file (helper processes the browser starts may outlive it holding pipes).
    let dom_file = dir.path().join("dom.html");
    let chromium = |path: &str| -> Option<(Duration, String)> {
        let start = Instant::now();
        let status = std::process::Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                "--dump-dom",
                "--virtual-time-budget=10000",
            ])
            .arg(format!("{}{path}", c.url))
            .stdout(std::fs::File::create(&dom_file).ok()?)
            .stderr(std::process::Stdio::null())
            .status()
            .ok()?;
        if !status.success() {
            return None;
        }
        Some((start.elapsed(), std::fs::read_to_string(&dom_file).ok()?))
    };
    match (
        chromium("/login"),
        chromium(&format!("/sweeps/{big}?live=0")),
    ) {
        (Some((empty, _)), Some((full, dom))) => println!(
            "\nheadless Chromium, wall time: a page without data {:.2} s; this sweep's page until rendered {:.2} s ({} trials loaded, {} rows laid out)",
            empty.as_secs_f64(),
            full.as_secs_f64(),
            dom.split("data-rows=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or("?"),
            dom.matches("<tr data-job=").count()
        ),
        _ => println!("\n(no chromium to time the page)"),
    }
}
