//! `jetsweep results SWEEP [--per-seed] [--format table|csv|json]`: per grid point (or per seed)
//! what the sweep measured. Accuracy is in percent in tables and a fraction in CSV and JSON, as
//! everywhere in jetsweep.

use clap::Args;

use super::{Remote, rpc_error};
use crate::client::render::results::{Format, render, render_per_seed};

#[derive(Debug, Args)]
pub struct ResultsArgs {
    /// The sweep's id (as `jetsweep submit` printed it; `jetsweep status` lists them).
    pub sweep: String,
    /// One row per job (seed) instead of per grid point: its state, final and best-epoch numbers,
    /// losses, training seconds, samples/s and parameters.
    #[arg(long)]
    pub per_seed: bool,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    #[command(flatten)]
    pub remote: Remote,
}

pub async fn run(args: ResultsArgs) -> anyhow::Result<()> {
    let mut client = args.remote.connect().await?;
    if args.per_seed {
        let jobs = client.jobs(&args.sweep).await.map_err(rpc_error)?;
        print!("{}", render_per_seed(&jobs, args.format));
    } else {
        let results = client.results(&args.sweep).await.map_err(rpc_error)?;
        print!("{}", render(&results, args.format));
    }
    Ok(())
}
