//! Benchmark: how long a prepared dataset file takes to load and verify (read, sha256, decode).
//!
//!     jetsweep-worker prepare --dataset synthetic:830000 --out /tmp/full.jsd
//!     cargo run --release -p jetsweep-data --example load_speed -- /tmp/full.jsd

use std::time::Instant;

fn main() {
    let path = std::env::args().nth(1).expect("usage: load_speed FILE.jsd");
    let path = std::path::Path::new(&path);
    let mut best = f64::INFINITY;
    let mut rows = 0;
    for _ in 0..5 {
        let start = Instant::now();
        let data = jetsweep_data::cache::load(path).unwrap_or_else(|e| panic!("{e}"));
        best = best.min(start.elapsed().as_secs_f64());
        rows = data.train.len() + data.test.len();
    }
    let mb = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0) as f64 / 1e6;
    println!(
        "{}: {rows} rows, {mb:.1} MB, loaded and verified in {:.1} ms (best of 5)",
        path.display(),
        best * 1e3
    );
}
