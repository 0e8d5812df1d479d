//! Stop signals with the coordinator away: a worker running a job, told twice to stop, or told once
//! with a short `--drain-timeout`, must exit within seconds even though it cannot hand its job back
//! (the lease then expires on the coordinator, which is what it is for); an idle worker (waiting
//! for work from a coordinator that is away) must exit at once.

use std::time::{Duration, Instant};

use crate::common::*;

/// One long job (100,000 jets, batch 32, 60 epochs: longer than the scenario).
const SWEEP: &str = "name = \"sigterm\"\ndataset = \"synthetic:100000\"\nlease_timeout_s = 3\n[defaults]\nmodel = \"jsc-s\"\nmax_epochs = 60\nbatch_size = 32\nlearning_rate = 1e-3\n";

/// Longest a worker may take to exit: its hand-back grace (5 s) and a margin.
const EXIT_LIMIT: Duration = Duration::from_secs(10);

pub async fn run(_size: Size) -> Outcome {
    sigterm().await.into()
}

/// Waits for the worker to exit; returns how long it took.
async fn exits(w: &mut Proc, since: Instant) -> Checked<f64> {
    let exited = poll(EXIT_LIMIT, "the worker to exit", || {
        let exited = w.child.try_wait().ok().flatten().is_some();
        async move { exited.then_some(()) }
    })
    .await;
    exited.map_err(|e| format!("{e}; its log ends:\n{}", log_tail(&w.log, 6)))?;
    Ok(since.elapsed().as_secs_f64())
}

async fn sigterm() -> Checked<String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let listen = format!("127.0.0.1:{}", free_port());
    // The job running (its `attempt`-th attempt) with an epoch reported.
    let running = |url: String, id: String, attempt: u32| async move {
        poll(Duration::from_secs(120), "the job to run", || async {
            jobs(&url, &id)
                .await
                .iter()
                .any(|j| {
                    state(j) == jetsweep_proto::v1::JobState::Leased
                        && j.attempts == attempt
                        && j.epochs_done >= 1
                })
                .then_some(())
        })
        .await
    };

    // Told twice.
    let (mut c1, url) = coordinator(dir.path(), &listen, "1");
    let id = submit(&url, SWEEP).await.sweep_id;
    let mut w1 = worker(dir.path(), &url, "twice");
    running(url.clone(), id.clone(), 1).await?;
    c1.kill();
    let start = Instant::now();
    signal(w1.child.id(), libc::SIGTERM);
    tokio::time::sleep(Duration::from_millis(200)).await;
    signal(w1.child.id(), libc::SIGTERM);
    let twice = exits(&mut w1, start).await?;

    // Told once, with a drain timeout of 1 s, once it runs the job (when the first lease expired).
    let (mut c2, _) = coordinator(dir.path(), &listen, "2");
    let mut w2 = worker_with(dir.path(), &url, "once", &["--drain-timeout", "1"]);
    running(url.clone(), id.clone(), 2).await?;
    // And one with nothing to do, asking a coordinator that is about to go for work.
    let mut idle = worker(dir.path(), &url, "idle");
    tokio::time::sleep(Duration::from_secs(1)).await;
    c2.kill();
    let start = Instant::now();
    signal(w2.child.id(), libc::SIGTERM);
    signal(idle.child.id(), libc::SIGTERM);
    let idle_exit = exits(&mut idle, start).await?;
    let once = exits(&mut w2, start).await?;
    Ok(format!(
        "with the coordinator away, a worker running a job exited {twice:.1} s after two SIGTERMs, another {once:.1} s after one (--drain-timeout 1), an idle one {idle_exit:.1} s after one (limit {} s)",
        EXIT_LIMIT.as_secs()
    ))
}
