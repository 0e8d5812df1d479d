//! `jetsweep-chaos`: the coordinator and workers as real processes, put through what a cluster does
//! to them — workers killed, the coordinator killed and kept down, hostile clients, the security
//! review's attacks (cross-origin cancel, abandoned streams, a tampered cache, silent TLS, a second
//! local user against `jetsweep run`), a full disk, a
//! worker cut off by a network partition, stop signals, hosts apart on a slow and lossy network —
//! each scenario checked by the numbers and summed up in one line.
//!
//!     cargo build --release && target/release/jetsweep-chaos            # the short form (CI, ~2 min)
//!     target/release/jetsweep-chaos --full                              # the full form (~6 min)
//!     target/release/jetsweep-chaos churn outage                        # some scenarios only
//!
//! Everything runs on 127.0.0.1, except the partition scenario, which makes a network namespace
//! and a veth pair of its own, and the apart scenario, which puts the coordinator and three workers
//! in namespaces of their own joined by a switch that delays and drops frames (root and `ip`
//! needed; without them each says so and is skipped, unless `JETSWEEP_TEST_REQUIRE_ALL=1`, where
//! a skip fails); both remove what they made. The disk scenario mounts a small tmpfs (root needed,
//! likewise). Exit status 1 if any scenario's check failed. Binaries are taken from this program's folder (the build's
//! `target/release`), or from `$JETSWEEP_BIN_DIR`.

mod apart;
mod churn;
mod common;
mod disk;
mod hostile;
mod lan;
mod local_user;
mod outage;
mod partition;
mod review;
mod sigterm;

use std::process::ExitCode;
use std::time::Instant;

use common::{Outcome, Size};

/// The scenarios, in the order they run.
const SCENARIOS: &[&str] = &[
    "hostile",
    "review",
    "local-user",
    "churn",
    "outage",
    "partition",
    "disk",
    "sigterm",
    "apart",
];

async fn run(name: &str, size: Size) -> Outcome {
    match name {
        "churn" => churn::run(size).await,
        "outage" => outage::run(size).await,
        "hostile" => hostile::run(size).await,
        "review" => review::run(size).await,
        "local-user" => local_user::run(size).await,
        "disk" => disk::run(size).await,
        "partition" => partition::run(size).await,
        "sigterm" => sigterm::run(size).await,
        "apart" => apart::run(size).await,
        _ => unreachable!("names are checked before"),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!(
            "usage: jetsweep-chaos [--full] [SCENARIO...]\nscenarios: {}\n--full: the sizes of the issue's checks (150+ jobs of churn, a 60 s outage); default: a short form for CI",
            SCENARIOS.join(", ")
        );
        return ExitCode::SUCCESS;
    }
    let size = if args.iter().any(|a| a == "--full") {
        Size::Full
    } else {
        Size::Short
    };
    let chosen: Vec<&str> = args
        .iter()
        .filter(|a| !a.starts_with("--"))
        .map(String::as_str)
        .collect();
    if let Some(unknown) = chosen.iter().find(|c| !SCENARIOS.contains(c)) {
        eprintln!(
            "no scenario {unknown:?}; the scenarios are: {}",
            SCENARIOS.join(", ")
        );
        return ExitCode::from(2);
    }
    common::use_binaries_beside_this_program();
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let mut failed = 0;
    for name in SCENARIOS
        .iter()
        .filter(|s| chosen.is_empty() || chosen.contains(s))
    {
        let start = Instant::now();
        let outcome = runtime.block_on(run(name, size));
        let seconds = start.elapsed().as_secs_f64();
        match outcome {
            Outcome::Passed(summary) => println!("{name}: ok: {summary} ({seconds:.0} s)"),
            Outcome::Skipped(why) if jetsweep_tests::need::require_all() => {
                failed += 1;
                println!(
                    "{name}: FAILED: skipped, but {}=1: {why}",
                    jetsweep_tests::need::REQUIRE_ALL
                );
            }
            Outcome::Skipped(why) => println!("{name}: skipped: {why}"),
            Outcome::Failed(why) => {
                failed += 1;
                println!("{name}: FAILED: {why} ({seconds:.0} s)");
            }
        }
    }
    if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
