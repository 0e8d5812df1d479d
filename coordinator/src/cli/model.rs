//! `jetsweep model ID --out FILE`: a sweep's kept model as a file, by default the best point's
//! best seed (see `client::export`).

use std::path::PathBuf;

use clap::Args;
use jetsweep_proto::v1 as pb;

use super::{Remote, rpc_error};
use crate::client::export::{self, Format};

#[derive(Debug, Args)]
pub struct ModelArgs {
    /// The sweep.
    pub sweep: String,
    /// The file to write (its folder must exist); NAME.scaling.json is written beside it with the
    /// dataset's standard scaler.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// The file's format [default: from the extension: .safetensors or .onnx].
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// One trial, by job id (`jetsweep status ID` lists them) [default: the best point's seed
    /// with the lowest validation loss].
    #[arg(long, value_name = "JOB", conflicts_with_all = ["point", "seed"])]
    pub job: Option<String>,
    /// One trial by its point (the row number `jetsweep results` shows) and seed.
    #[arg(long, value_name = "N", requires = "seed")]
    pub point: Option<u32>,
    /// The seed of --point.
    #[arg(long, value_name = "S", requires = "point")]
    pub seed: Option<u64>,
    /// The weights after the last epoch (kept with keep_models = "best-and-last") instead of
    /// after the best.
    #[arg(long)]
    pub last: bool,
    #[command(flatten)]
    pub remote: Remote,
}

pub async fn run(args: ModelArgs) -> anyhow::Result<()> {
    let format = match args.format {
        Some(f) => f,
        None => Format::of(&args.out).map_err(anyhow::Error::msg)?,
    };
    export::folder_of(&args.out).map_err(anyhow::Error::msg)?;
    let mut client = args.remote.connect().await?;
    let model = client
        .model(pb::GetModelRequest {
            sweep_id: args.sweep.clone(),
            job_id: args.job.clone().unwrap_or_default(),
            point: args.point,
            seed: args.seed,
            last: args.last,
        })
        .await
        .map_err(rpc_error)?;
    let (bytes, scaling) =
        export::export(format, &args.sweep, &model).map_err(anyhow::Error::msg)?;
    let scaling_file = export::scaling_path(&args.out);
    export::write_file(&args.out, &bytes).map_err(anyhow::Error::msg)?;
    export::write_file(&scaling_file, scaling.as_bytes()).map_err(anyhow::Error::msg)?;
    let trial = model.trial.unwrap_or_default();
    let m = model.metrics.unwrap_or_default();
    println!(
        "{}: {} (job {}, point {}, seed {}), weights after epoch {}: validation loss {:.4}, test accuracy {:.4}",
        args.out.display(),
        trial.model,
        model.job_id,
        model.point,
        trial.seed,
        model.epoch,
        m.val_loss,
        m.test_acc
    );
    println!("{}: the dataset's scaler", scaling_file.display());
    Ok(())
}
