//! Benchmark: the store's cost per job without the network: what the writer thread spends to
//! complete one job (with its one epoch) and lease the next, as `CompleteJob` with `slots` does,
//! committed in groups as the writer commits concurrent requests (straight through, as the writer
//! runs a group in which no request fails).
//!
//!     cargo run --release -p jetsweep-coordinator --example store_cost -- [JOBS] [GROUP] [SWEEPS]
//!
//! SWEEPS (default 1): the jobs split among that many sweeps, all queued at once, so each lease
//! weighs that many active sweeps (the fair share). Prints µs per job and the bytes written per
//! job (WAL and any temporary files).

/// The same allocator as the `jetsweep` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::Instant;

use jetsweep_coordinator::jobs;
use jetsweep_coordinator::store::Store;
use jetsweep_coordinator::sweep::SweepSpec;
use jetsweep_proto::dataset::{DatasetRef, ValidationKind};
use jetsweep_proto::metrics::{EpochMetrics, TrialResult};

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("usage: [JOBS] [GROUP] [SWEEPS]"))
        .collect();
    let jobs_n = args.first().copied().unwrap_or(10_000);
    let group = args.get(1).copied().unwrap_or(50);
    let sweeps = args.get(2).copied().unwrap_or(1).max(1);
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("state.db")).unwrap();
    let dataset = DatasetRef {
        spec: "synthetic:1000".into(),
        sha256: "0".repeat(64),
        bytes: 1,
        synthetic: true,
        validation: ValidationKind::TrainAsVal,
    };
    // Sweep k holds seeds k, k + SWEEPS, …: distinct jobs, about JOBS / SWEEPS each.
    for k in 0..sweeps {
        let seeds: Vec<String> = (k..jobs_n).step_by(sweeps).map(|s| s.to_string()).collect();
        let toml = format!(
            "name = \"bench{k}\"\ndataset = \"synthetic:1000\"\n[defaults]\nmax_epochs = 1\n[grid]\nseed = [{}]\n",
            seeds.join(",")
        );
        let spec = SweepSpec::parse(&toml).unwrap();
        store
            .write(|tx| jobs::submit(tx, &spec, &toml, &dataset, 1))
            .unwrap();
    }
    let workers: Vec<String> = (0..group)
        .map(|w| {
            store
                .write(|tx| jobs::register_worker(tx, &format!("w{w}"), "cpu", 1, 1))
                .unwrap()
        })
        .collect();
    let mut held: Vec<Option<String>> = workers
        .iter()
        .map(|w| {
            store
                .write(|tx| jobs::lease_jobs(tx, w, 1, 2))
                .unwrap()
                .pop()
                .map(|g| g.lease_id)
        })
        .collect();
    let epoch = EpochMetrics {
        epoch: 1,
        lr: 1e-3,
        train_loss: 1.0,
        train_acc: 0.5,
        val_loss: 1.0,
        val_acc: 0.5,
        test_loss: 1.0,
        test_acc: 0.5,
        seconds: 0.01,
        samples_per_second: 1e5,
    };
    let result = TrialResult {
        params: 117,
        test_acc: 0.5,
        best_epoch: 1,
        best_test_acc: 0.5,
    };
    let written_before = bytes_written();
    let start = Instant::now();
    let mut done = 0usize;
    let mut now = 10;
    while held.iter().any(Option::is_some) {
        now += 1;
        store
            .write(|tx| {
                for (w, lease) in workers.iter().zip(held.iter_mut()) {
                    let Some(l) = lease.take() else { continue };
                    jobs::complete(tx, &l, w, std::slice::from_ref(&epoch), &result, now)?;
                    *lease = jobs::lease_jobs(tx, w, 1, now)?.pop().map(|g| g.lease_id);
                    done += 1;
                }
                Ok(())
            })
            .unwrap();
    }
    let s = start.elapsed().as_secs_f64();
    println!(
        "{done} jobs of {sweeps} sweep(s) in groups of {group}: {:.1} µs per job ({:.0} jobs/s on one thread), {} bytes written per job",
        s * 1e6 / done as f64,
        done as f64 / s,
        (bytes_written() - written_before) / done as u64
    );
}

/// Bytes this process has written to files so far (Linux `/proc/self/io`), 0 where unknown.
fn bytes_written() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|io| {
            io.lines()
                .find_map(|l| l.strip_prefix("wchar: ").map(|n| n.trim().parse().ok()))
        })
        .flatten()
        .unwrap_or(0)
}
