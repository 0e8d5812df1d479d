//! `jetsweep report SWEEP --out DIR`: fetches a sweep's results, jobs and learning curves from the
//! coordinator and writes the report (see [`crate::report`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use clap::Args;
use jetsweep_proto::auth::Channel;
use jetsweep_proto::v1 as pb;
use jetsweep_proto::v1::sweep_service_client::SweepServiceClient;

use super::{Remote, every_page};
use crate::report::{self, Inputs};

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
pub async fn write(
    client: &mut SweepServiceClient<Channel>,
    sweep_id: &str,
    out: &Path,
) -> anyhow::Result<()> {
    eprintln!("jetsweep: fetching {sweep_id}: results, jobs, learning curves");
    let inputs = Inputs {
        sweep: super::status::sweep_view(client, sweep_id).await?,
        results: super::results::fetch(client, sweep_id).await?,
        jobs: super::results::all_jobs(client, sweep_id).await?,
        curves: all_curves(client, sweep_id).await?,
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

/// Every job's epochs, page by page.
async fn all_curves(
    client: &mut SweepServiceClient<Channel>,
    sweep_id: &str,
) -> anyhow::Result<HashMap<String, Vec<pb::EpochMetrics>>> {
    let mut curves = HashMap::new();
    let call = async |page_token| {
        let page = client
            .get_curves(pb::GetCurvesRequest {
                sweep_id: sweep_id.to_string(),
                page_size: 0,
                page_token,
            })
            .await?
            .into_inner();
        Ok((page.jobs, page.next_page_token))
    };
    every_page(call, |page: Vec<pb::JobCurve>| {
        curves.extend(page.into_iter().map(|c| (c.job_id, c.epochs)))
    })
    .await?;
    Ok(curves)
}
