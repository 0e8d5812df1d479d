//! `jetsweep submit FILE` and `jetsweep cancel SWEEP`.

use std::path::PathBuf;

use clap::Args;
use jetsweep_proto::v1 as pb;

use super::{Remote, rpc_error};

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// The sweep file (TOML; see sweeps/ for examples).
    pub file: PathBuf,
    #[command(flatten)]
    pub remote: Remote,
}

pub async fn run(args: SubmitArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.file)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", args.file.display()))?;
    let sweep = submit(&args.remote, text).await?;
    eprintln!(
        "submitted {}: {} jobs ({} already done and reused, {} queued)",
        sweep.sweep_id, sweep.total, sweep.reused, sweep.queued
    );
    println!("{}", sweep.sweep_id);
    Ok(())
}

/// Submits `sweep_toml`, printing the coordinator's warnings about it to stderr.
pub async fn submit(remote: &Remote, sweep_toml: String) -> anyhow::Result<pb::SweepView> {
    let mut client = remote.connect().await?;
    let (sweep, warnings) = client.submit_warned(sweep_toml).await.map_err(rpc_error)?;
    for warning in warnings {
        eprintln!("warning: {warning}");
    }
    Ok(sweep)
}

#[derive(Debug, Args)]
pub struct CancelArgs {
    pub sweep: String,
    #[command(flatten)]
    pub remote: Remote,
}

pub async fn cancel(args: CancelArgs) -> anyhow::Result<()> {
    let mut client = args.remote.connect().await?;
    let reply = client.cancel(&args.sweep).await.map_err(rpc_error)?;
    let s = reply.sweep.unwrap_or_default();
    let mut line = format!(
        "{}: cancel requested; {} cancelled, {} running that stop at their next report",
        s.sweep_id, s.cancelled, reply.stopping
    );
    if reply.kept > 0 {
        line += &format!(
            "; {} go on because another sweep that is not cancelled holds them too",
            reply.kept
        );
    }
    println!("{line}");
    Ok(())
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// A finished or cancelled sweep (cancel a running one first).
    pub sweep: String,
    #[command(flatten)]
    pub remote: Remote,
}

pub async fn delete(args: DeleteArgs) -> anyhow::Result<()> {
    let mut client = args.remote.connect().await?;
    let r = client.delete(&args.sweep).await.map_err(rpc_error)?;
    let mut line = format!(
        "{}: deleted {} jobs ({} epoch reports, {} kept models), {} KiB of the state file freed for reuse",
        crate::client::render::words::printable(&args.sweep),
        r.jobs,
        r.epochs,
        r.models,
        r.freed_bytes / 1024
    );
    if r.dataset_bytes > 0 {
        line += &format!(
            ", and its prepared dataset ({} KiB)",
            r.dataset_bytes / 1024
        );
    }
    if r.shared > 0 {
        line += &format!("; {} jobs kept: other sweeps hold them", r.shared);
    }
    println!("{line}");
    Ok(())
}
