//! Benchmark: the dashboard's sweep list (`/`) on a coordinator holding thousands of sweeps.
//!
//!     cargo run --release -p jetsweep-coordinator --example sweeps_at_scale -- [SWEEPS]
//!
//! SWEEPS sweeps of 8 one-epoch jobs each are submitted (distinct learning rates, so no job is
//! reused), and half the jobs of every sweep completed through the worker service, each with its
//! epoch (so every sweep has compute time, a best trial and jobs to go). Then prints the time of
//! `/api/sweeps` (the first page: 50 sweeps with counts and activity, what `/` loads every few
//! seconds), of a page deep in the list, and of `ListSweeps` (every sweep's counts, for the CLI).

use std::time::Instant;

use jetsweep_coordinator::testkit::{TestCoordinator, http_get};
use jetsweep_proto::v1 as pb;

#[tokio::main]
async fn main() {
    let sweeps: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("SWEEPS is a number"))
        .unwrap_or(3_000);
    let dir = tempfile::tempdir().unwrap();
    let mut c = TestCoordinator::start(dir.path()).await;
    let worker = c.register("filler", 64).await;
    let setup = Instant::now();
    for i in 0..sweeps {
        let toml = format!(
            "name = \"s{i}\"\ndataset = \"synthetic:2000\"\nlease_timeout_s = 3600\n[defaults]\nmax_epochs = 1\nlearning_rate = {}e-7\n[grid]\nbatch_size = [16, 32, 64, 128]\nseed = [0, 1]\n",
            i + 1
        );
        c.submit(&toml).await;
        for (k, lease) in c.lease(&worker, 4).await.into_iter().enumerate() {
            c.workers
                .complete_job(pb::CompleteJobRequest {
                    lease_id: lease.lease_id,
                    worker_id: worker.clone(),
                    result: Some(pb::TrialResult {
                        params: 117,
                        test_acc: 0.6,
                        best_epoch: 1,
                        best_test_acc: 0.6,
                    }),
                    epochs: vec![pb::EpochMetrics {
                        epoch: 1,
                        lr: 1e-3,
                        val_loss: 1.0 - 0.1 * k as f64,
                        seconds: 0.5,
                        samples_per_second: 1e5,
                        ..Default::default()
                    }],
                    ..Default::default()
                })
                .await
                .expect("completed");
        }
    }
    eprintln!(
        "{sweeps} sweeps ({} jobs, half completed) set up in {:.1} s",
        sweeps * 8,
        setup.elapsed().as_secs_f64()
    );
    let time = |path: &str| {
        let mut best = f64::INFINITY;
        let mut bytes = 0;
        for _ in 0..5 {
            let t = Instant::now();
            let (status, body) = http_get(&c.url, path, None);
            assert_eq!(status, 200, "{path}: {body}");
            best = best.min(t.elapsed().as_secs_f64());
            bytes = body.len();
        }
        println!("{path}: {:.1} ms (best of 5), {bytes} bytes", 1000.0 * best);
    };
    time("/api/sweeps");
    time(&format!("/api/sweeps?from={}", sweeps / 2));
    let t = Instant::now();
    let page = c
        .sweeps
        .list_sweeps(pb::ListSweepsRequest::default())
        .await
        .unwrap()
        .into_inner();
    println!(
        "ListSweeps: the first page, {} of {} sweeps, in {:.1} ms",
        page.sweeps.len(),
        page.total,
        1000.0 * t.elapsed().as_secs_f64()
    );
}
