//! `jetsweep status [SWEEP]`, `jetsweep workers`, `jetsweep watch SWEEP`.

use clap::Args;
use jetsweep_proto::state::JobStatus;
use jetsweep_proto::v1 as pb;

use super::{Remote, rpc_error};

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// A sweep id: show its jobs. Without one: every sweep.
    pub sweep: Option<String>,
    #[command(flatten)]
    pub remote: Remote,
}

fn sweep_line(s: &pb::SweepView) -> String {
    format!(
        "{:<28} {:>6} {:>6} {:>6} {:>6} {:>6} {:>9}{}",
        s.sweep_id,
        s.total,
        s.done,
        s.leased,
        s.queued,
        s.failed,
        s.cancelled,
        if s.cancel_requested {
            "  (cancel requested)"
        } else {
            ""
        }
    )
}

/// One sweep's counts.
pub async fn sweep_view(
    client: &mut jetsweep_proto::v1::sweep_service_client::SweepServiceClient<
        jetsweep_proto::auth::Channel,
    >,
    sweep_id: &str,
) -> anyhow::Result<pb::SweepView> {
    client
        .get_sweep(pb::GetSweepRequest {
            sweep_id: sweep_id.to_string(),
        })
        .await
        .map_err(rpc_error)?
        .into_inner()
        .sweep
        .ok_or_else(|| anyhow::anyhow!("the coordinator answered without the sweep"))
}

pub async fn run(args: StatusArgs) -> anyhow::Result<()> {
    let mut client = args.remote.connect().await?;
    let Some(sweep_id) = args.sweep else {
        let sweeps = client
            .list_sweeps(pb::ListSweepsRequest {})
            .await
            .map_err(rpc_error)?
            .into_inner()
            .sweeps;
        println!(
            "{:<28} {:>6} {:>6} {:>6} {:>6} {:>6} {:>9}",
            "SWEEP", "JOBS", "DONE", "RUN", "QUEUED", "FAILED", "CANCELLED"
        );
        for s in &sweeps {
            println!("{}", sweep_line(s));
        }
        return Ok(());
    };
    let sweep = sweep_view(&mut client, &sweep_id).await?;
    eprintln!("{}", sweep_line(&sweep));
    println!(
        "{:<34} {:<13} {:<7} {:>5} {:>9} {:>6} {:<16} {:>8} {:>8}  ERROR",
        "JOB", "MODEL", "BATCH", "LR", "EPOCH", "SEED", "WORKER", "TEST %", "ATTEMPTS"
    );
    let mut token = String::new();
    loop {
        let page = client
            .list_jobs(pb::ListJobsRequest {
                sweep_id: sweep_id.clone(),
                page_size: 0,
                page_token: token,
            })
            .await
            .map_err(rpc_error)?
            .into_inner();
        for j in &page.jobs {
            let spec = j.spec.clone().unwrap_or_default();
            let state = pb::JobState::try_from(j.state)
                .ok()
                .and_then(|s| JobStatus::try_from(s).ok())
                .map_or("", JobStatus::shown);
            let acc = j
                .result
                .as_ref()
                .map(|r| r.test_acc)
                .or(j.latest.as_ref().map(|m| m.test_acc));
            println!(
                "{:<34} {:<13} {:<7} {:>5} {:>4}/{:<4} {:>6} {:<16} {:>8} {:>8}  {}",
                format!("{} {}", &j.job_id[..16.min(j.job_id.len())], state),
                spec.model,
                spec.batch_size,
                format!("{:.0e}", spec.learning_rate),
                j.epochs_done,
                spec.max_epochs,
                spec.seed,
                if j.worker_id.is_empty() {
                    "-"
                } else {
                    &j.worker_id
                },
                // Percent, as `results` prints it.
                acc.map_or("-".into(), |a| format!("{:.2}", 100.0 * a)),
                j.attempts,
                j.error
            );
        }
        if page.next_page_token.is_empty() {
            return Ok(());
        }
        token = page.next_page_token;
    }
}

#[derive(Debug, Args)]
pub struct WorkersArgs {
    #[command(flatten)]
    pub remote: Remote,
}

pub async fn workers(args: WorkersArgs) -> anyhow::Result<()> {
    let mut client = args.remote.connect().await?;
    let workers = client
        .list_workers(pb::ListWorkersRequest {})
        .await
        .map_err(rpc_error)?
        .into_inner()
        .workers;
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
            if w.gone { "gone" } else { "alive" }
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
    let last = follow(&mut client, &args.sweep).await?;
    println!("{}", sweep_line(&last));
    // A script that waits on `watch` learns from its exit status whether everything ran.
    anyhow::ensure!(
        last.failed == 0,
        "{} job(s) of {} failed: `jetsweep status {}` shows why",
        last.failed,
        last.sweep_id,
        last.sweep_id
    );
    Ok(())
}

/// Shows a progress bar on stderr until the sweep ends; returns its final counts.
pub async fn follow(
    client: &mut jetsweep_proto::v1::sweep_service_client::SweepServiceClient<
        jetsweep_proto::auth::Channel,
    >,
    sweep_id: &str,
) -> anyhow::Result<pb::SweepView> {
    let mut stream = client
        .watch_sweep(pb::WatchSweepRequest {
            sweep_id: sweep_id.to_string(),
        })
        .await
        .map_err(rpc_error)?
        .into_inner();
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:40}] {pos}/{len} jobs ended, {elapsed} elapsed, eta {eta}",
        )
        .expect("a fixed template is valid")
        .progress_chars("=> "),
    );
    let mut last = pb::SweepView::default();
    while let Some(update) = stream.message().await.map_err(rpc_error)? {
        if let Some(s) = update.sweep {
            bar.set_length(u64::from(s.total));
            bar.set_position(u64::from(s.done + s.failed + s.cancelled));
            bar.set_message(format!(
                "{}: {} running, {} queued, {} failed",
                s.sweep_id, s.leased, s.queued, s.failed
            ));
            last = s;
        }
    }
    bar.finish();
    Ok(last)
}
