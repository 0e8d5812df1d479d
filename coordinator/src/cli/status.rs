//! `jetsweep status [SWEEP]`, `jetsweep workers`, `jetsweep watch SWEEP`.

use clap::Args;
use jetsweep_proto::v1 as pb;

use super::{Remote, rpc_error};
use crate::client::render::decisions::decision_lines;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// A sweep id: show its jobs. Without one: every sweep.
    pub sweep: Option<String>,
    #[command(flatten)]
    pub remote: Remote,
}

fn sweep_line(s: &pb::SweepView) -> String {
    format!(
        "{:<28} {:>6} {:>6} {:>6} {:>6} {:>6} {:>9}  {:<16}{}",
        s.sweep_id,
        s.total,
        s.done,
        s.leased,
        s.queued,
        s.failed,
        s.cancelled,
        crate::client::render::words::printable(&s.submitted_by),
        if s.cancel_requested {
            "  (cancel requested)"
        } else {
            ""
        }
    )
}

pub async fn run(args: StatusArgs) -> anyhow::Result<()> {
    let mut client = args.remote.connect().await?;
    let Some(sweep_id) = args.sweep else {
        let sweeps = client.sweeps().await.map_err(rpc_error)?;
        println!(
            "{:<28} {:>6} {:>6} {:>6} {:>6} {:>6} {:>9}  BY",
            "SWEEP", "JOBS", "DONE", "RUN", "QUEUED", "FAILED", "CANCELLED"
        );
        for s in &sweeps {
            println!("{}", sweep_line(s));
        }
        return Ok(());
    };
    let sweep = client.sweep(&sweep_id).await.map_err(rpc_error)?;
    println!("{}", sweep_header(&sweep));
    println!(
        "{:<17} {:<9} {:<13} {:>6} {:>8} {:>5} {:>9} {:<12} {:>7} {:>8} {:>8} {:>8} {:>10} {:>8} {:>8}  ERROR",
        "JOB",
        "STATE",
        "MODEL",
        "BATCH",
        "LR",
        "SEED",
        "EPOCH",
        "WORKER",
        "TEST %",
        "TRAIN L",
        "VAL L",
        "s/EPOCH",
        "SAMPLES/s",
        "PARAMS",
        "ATTEMPTS"
    );
    let jobs = client.jobs(&sweep_id).await.map_err(rpc_error)?;
    for j in &jobs {
        println!("{}", job_line(j).trim_end());
    }
    let decisions = client.decisions(&sweep_id).await.map_err(rpc_error)?;
    let lines = decision_lines(&decisions);
    if !lines.is_empty() {
        println!();
        for line in lines {
            println!("{line}");
        }
        println!("  {}", epochs_spent(&jobs));
    }
    Ok(())
}

/// Trial-epochs trained against what every trial to its last epoch would have cost.
fn epochs_spent(jobs: &[pb::JobView]) -> String {
    let (spent, full) = crate::client::render::decisions::trial_epochs(jobs);
    format!(
        "trial-epochs trained: {spent} of the {full} that every trial to its last epoch takes ({:.0} %)",
        100.0 * spent as f64 / full.max(1) as f64
    )
}

/// A sweep's state in one line: its name and id, then its jobs by state.
/// "N paused, " when asynchronous halving holds jobs at a rung, else nothing.
fn paused_part(s: &pb::SweepView) -> String {
    if s.paused > 0 {
        format!("{} paused, ", s.paused)
    } else {
        String::new()
    }
}

pub fn sweep_header(s: &pb::SweepView) -> String {
    format!(
        "sweep {} ({}): {} jobs: {} done, {} running, {} queued, {}{} failed, {} cancelled{}",
        s.sweep_id,
        s.name,
        s.total,
        s.done,
        s.leased,
        s.queued,
        paused_part(s),
        s.failed,
        s.cancelled,
        if s.cancel_requested {
            " (cancel requested)"
        } else {
            ""
        }
    )
}

/// One job: its state and trial, and what it measured (the latest epoch while it runs; the
/// result and the summary of its epochs when done).
fn job_line(j: &pb::JobView) -> String {
    let spec = j.spec.clone().unwrap_or_default();
    let latest = j.latest.as_ref();
    let summary = j.summary.as_ref();
    let acc = j
        .result
        .as_ref()
        .map(|r| r.test_acc)
        .or(latest.map(|m| m.test_acc));
    let train_loss = summary
        .map(|s| s.final_train_loss)
        .or(latest.map(|m| m.train_loss));
    let seconds_per_epoch = match summary {
        Some(s) if j.epochs_done > 0 => Some(s.train_seconds / f64::from(j.epochs_done)),
        _ => latest.map(|m| m.seconds),
    };
    let samples = summary
        .map(|s| s.samples_per_second)
        .or(latest.map(|m| m.samples_per_second));
    let f = |x: Option<f64>, scale: f64, digits: usize| {
        x.map_or("-".into(), |x| format!("{:.digits$}", scale * x))
    };
    format!(
        "{:<17} {:<9} {:<13} {:>6} {:>8} {:>5} {:>9} {:<12} {:>7} {:>8} {:>8} {:>8} {:>10} {:>8} {:>8}  {}",
        &j.job_id[..16.min(j.job_id.len())],
        crate::client::render::words::job_state(j),
        spec.model,
        spec.batch_size,
        crate::client::render::words::real(spec.learning_rate),
        spec.seed,
        format!("{}/{}", j.epochs_done, spec.max_epochs),
        if j.worker_id.is_empty() {
            "-"
        } else {
            &j.worker_id
        },
        // Percent, as `results` prints it.
        f(acc, 100.0, 2),
        f(train_loss, 1.0, 4),
        f(latest.map(|m| m.val_loss), 1.0, 4),
        f(seconds_per_epoch, 1.0, 2),
        f(samples, 1.0, 0),
        j.result
            .as_ref()
            .map_or("-".into(), |r| r.params.to_string()),
        j.attempts,
        j.error
    )
}

#[derive(Debug, Args)]
pub struct WorkersArgs {
    #[command(flatten)]
    pub remote: Remote,
}

pub async fn workers(args: WorkersArgs) -> anyhow::Result<()> {
    let mut client = args.remote.connect().await?;
    let workers = client.workers().await.map_err(rpc_error)?;
    let now = crate::clock::Clock::now(&crate::clock::SystemClock);
    println!(
        "{:<24} {:<20} {:<8} {:>5} {:>10}  {:>4}  STATE",
        "WORKER", "HOST", "DEVICE", "SLOTS", "SEEN", "JOBS"
    );
    for w in workers {
        println!(
            "{:<24} {:<20} {:<8} {:>5} {:>8.1}s  {:>4}  {}",
            w.worker_id,
            w.host,
            w.device,
            w.slots,
            (now - w.last_seen_unix_ms) as f64 / 1000.0,
            w.job_ids.len(),
            if w.left {
                "left"
            } else if w.gone {
                "gone"
            } else {
                "alive"
            }
        );
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    pub sweep: String,
    #[command(flatten)]
    pub remote: Remote,
}

pub async fn watch(args: WatchArgs) -> anyhow::Result<()> {
    let mut client = args.remote.connect().await?;
    let last = super::progress::follow(&mut client, &args.sweep).await?;
    println!("{}", sweep_line(&last));
    // A script that waits on `watch` learns from its exit status whether everything ran: a sweep
    // with a failed job, or cancelled (by a person: early stopping is the sweep's own rule), fails.
    anyhow::ensure!(
        last.failed == 0 && !last.cancel_requested,
        "{} of {} jobs of {} did not finish ({} failed, {} cancelled{}): `jetsweep status {}` shows why",
        last.failed + last.cancelled,
        last.total,
        last.sweep_id,
        last.failed,
        last.cancelled,
        if last.cancel_requested {
            ", the sweep was cancelled"
        } else {
            ""
        },
        last.sweep_id
    );
    Ok(())
}
