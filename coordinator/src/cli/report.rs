//! `jetsweep report SWEEP --out DIR`: fetches a sweep's results, jobs and learning curves from the
//! coordinator and writes the report (see [`crate::client::report`]).

use std::path::{Path, PathBuf};

use super::{Remote, rpc_error};
use crate::client::SweepClient;
use crate::client::report::{self, Inputs};
use clap::Args;

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The sweep's id (as `jetsweep submit` printed it; `jetsweep status` lists them).
    pub sweep: String,
    /// Folder to write report.html, report.md, results.json and figures/ into (made if missing;
    /// files of an earlier report there are replaced).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    #[command(flatten)]
    pub remote: Remote,
}

pub async fn run(args: ReportArgs) -> anyhow::Result<()> {
    let mut client = args.remote.connect().await?;
    write(&mut client, &args.sweep, &args.out).await
}

/// Fetches what the report needs and writes it into `out`, saying where on stderr.
pub async fn write(client: &mut SweepClient, sweep_id: &str, out: &Path) -> anyhow::Result<()> {
    eprintln!("jetsweep: fetching {sweep_id}: results, jobs, learning curves");
    let inputs = Inputs {
        sweep: client.sweep(sweep_id).await.map_err(rpc_error)?,
        results: client.results(sweep_id).await.map_err(rpc_error)?,
        jobs: client.jobs(sweep_id).await.map_err(rpc_error)?,
        curves: client.curves(sweep_id).await.map_err(rpc_error)?,
        decisions: client.decisions(sweep_id).await.map_err(rpc_error)?,
        made_unix_ms: crate::clock::Clock::now(&crate::clock::SystemClock),
    };
    let out = out.to_path_buf();
    let written = tokio::task::spawn_blocking(move || {
        let written = report::write(&out, &inputs)?;
        anyhow::Ok((out, written))
    })
    .await??;
    let (out, written) = written;
    let figures = written
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .count();
    eprintln!(
        "jetsweep: report written: {} and {} ({figures} figures as SVG and PNG in {})",
        out.join("report.html").display(),
        out.join("report.md").display(),
        out.join("figures").display()
    );
    Ok(())
}
