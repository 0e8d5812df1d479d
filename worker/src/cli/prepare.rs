//! `jetsweep-worker prepare`: load a dataset, apply MASE's preprocessing and save it.

use std::path::PathBuf;

use clap::Args;
use jetsweep_data::{cache, npy};

use super::dataset_args::{DatasetArgs, describe};

#[derive(Debug, Args)]
pub struct PrepareArgs {
    #[command(flatten)]
    pub data: DatasetArgs,

    /// Where to write: a path ending in `.jsd` gets the prepared-dataset file; any other path is a
    /// directory that gets x_train.npy, y_train.npy, x_test.npy, y_test.npy (and x_val/y_val).
    #[arg(long, value_name = "PATH")]
    pub out: PathBuf,
}

pub fn run(args: PrepareArgs) -> anyhow::Result<()> {
    let data = args.data.load()?;
    eprintln!("{}", describe(&data));
    if args.out.extension().is_some_and(|e| e == cache::EXTENSION) {
        cache::save(&data, &args.out)?;
    } else {
        npy::export_dir(&data, &args.out)?;
    }
    println!("{}", args.out.display());
    Ok(())
}
