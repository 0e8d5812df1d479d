//! The `jetsweep-worker` command line: one file per subcommand; `main.rs` only parses and dispatches.

mod dataset_args;
mod prepare;
mod train;

use clap::{Parser, Subcommand};

pub use dataset_args::DatasetArgs;
pub use prepare::PrepareArgs;
pub use train::TrainArgs;

/// jetsweep's worker: trains JSC models (jet substructure classification, MASE's recipe) with burn.
#[derive(Debug, Parser)]
#[command(name = "jetsweep-worker", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train one model standalone and print a line (or a JSON object) per epoch.
    Train(TrainArgs),
    /// Load, preprocess and save a dataset: a prepared `.jsd` file, or a directory of `.npy` files
    /// for the PyTorch reference trainer.
    Prepare(PrepareArgs),
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Train(args) => train::run(args),
        Command::Prepare(args) => prepare::run(args),
    }
}
