//! The `jetsweep-worker` command line: one file per subcommand; `main.rs` only parses and dispatches.

mod dataset_args;
mod eval;
mod prepare;
mod train;

use clap::{Parser, Subcommand};
use jetsweep_proto::logging::{self, LogFormat};

pub use dataset_args::DatasetArgs;
pub use prepare::PrepareArgs;
pub use train::TrainArgs;

/// jetsweep's worker: trains JSC models (jet substructure classification, MASE's recipe) with burn.
///
/// With `--coordinator URL` (or JETSWEEP_COORDINATOR) and no subcommand it joins that coordinator and
/// runs its jobs until stopped (SIGTERM or Ctrl-C: it takes no new work and finishes what it holds).
#[derive(Debug, Parser)]
#[command(
    name = "jetsweep-worker",
    version,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub agent: AgentArgs,
}

/// How the worker joins a coordinator.
#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// The coordinator's address, e.g. http://10.0.0.5:7070.
    #[arg(long, env = "JETSWEEP_COORDINATOR", value_name = "URL")]
    pub coordinator: Option<String>,

    /// Device to train on: cpu, or cuda:N.
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    pub device: crate::device::DeviceChoice,

    /// Packs of jobs to run at once (one CPU core each is the fast layout for these small models).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub slots: u32,

    /// Most jobs trained together as one pack (jobs of one model, batch size, epoch count and
    /// dataset; each keeps its own seed, learning rate, lease and result). 1: one job at a time.
    /// Default: 16 on a CPU, 512 on a GPU.
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u32).range(1..=jetsweep_proto::limits::MAX_PACK as i64))]
    pub pack: Option<u32>,

    /// Folder for datasets fetched from the coordinator [default: $JETSWEEP_CACHE_DIR or ~/.cache/jetsweep].
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<std::path::PathBuf>,
    /// The coordinator's token, if it was started with one.
    #[arg(
        long,
        env = "JETSWEEP_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,

    /// PEM certificate of the authority that signed the coordinator's TLS certificate (for an
    /// https:// address whose certificate is not from a public authority).
    #[arg(long, env = "JETSWEEP_CA", value_name = "FILE")]
    pub ca: Option<std::path::PathBuf>,

    /// After SIGTERM or Ctrl-C, how long (seconds) running jobs may take to finish before they are
    /// handed back to the coordinator (a second signal hands them back at once). Under Slurm or
    /// Kubernetes keep it below the grace before SIGKILL.
    #[arg(long, default_value_t = 20, value_name = "SECONDS")]
    pub drain_timeout: u64,

    /// Exit (status 0) once no job has been held or granted for this many seconds: for workers
    /// whose allocation costs while they wait, such as a Slurm job array. Default: run until
    /// stopped.
    #[arg(long, value_name = "SECONDS")]
    pub exit_when_idle: Option<u64>,

    /// Log lines as readable text or as one JSON object each, on stderr (filter with JETSWEEP_LOG
    /// or RUST_LOG, e.g. `JETSWEEP_LOG=debug`). Every job's lines carry its sweep, job, lease and
    /// attempt.
    #[arg(long, default_value = "text", value_name = "text|json")]
    pub log_format: LogFormat,
}

fn parse_device(s: &str) -> Result<crate::device::DeviceChoice, String> {
    s.parse().map_err(|e: crate::WorkerError| e.to_string())
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train one model standalone and print a line (or a JSON object) per epoch.
    Train(TrainArgs),
    /// Load, preprocess and save a dataset: a prepared `.jsd` file, or a directory of `.npy` files
    /// for the PyTorch reference trainer.
    Prepare(PrepareArgs),
    /// The test accuracy of an exported model (`jetsweep model ID --out FILE.safetensors`) on a
    /// dataset, computed from the file alone.
    Eval(eval::EvalArgs),
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    logging::init(cli.agent.log_format);
    match cli.command {
        Some(Command::Train(args)) => train::run(args),
        Some(Command::Prepare(args)) => prepare::run(args),
        Some(Command::Eval(args)) => eval::run(args),
        None => run_agent(cli.agent),
    }
}

/// The cache folder, made if missing (mode 0700), and refused if another user owns it or others
/// may write it: on a shared machine (a predictable folder in /tmp) another user could otherwise
/// plant the datasets and checkpoints this worker trains from.
fn private_folder(dir: std::path::PathBuf) -> anyhow::Result<std::path::PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| anyhow::anyhow!("cannot make the cache folder {}: {e}", dir.display()))?;
    let meta = std::fs::metadata(&dir)
        .map_err(|e| anyhow::anyhow!("cache folder {}: {e}", dir.display()))?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        anyhow::bail!(
            "the cache folder {} belongs to another user (uid {}): give --cache-dir a folder of your own (e.g. from mktemp -d)",
            dir.display(),
            meta.uid()
        );
    }
    if meta.mode() & 0o022 != 0 {
        anyhow::bail!(
            "the cache folder {} may be written by others (mode {:o}): chmod go-w it, or give --cache-dir a private folder",
            dir.display(),
            meta.mode() & 0o777
        );
    }
    Ok(dir)
}

fn run_agent(args: AgentArgs) -> anyhow::Result<()> {
    let coordinator = args.coordinator.ok_or_else(|| {
        anyhow::anyhow!("give a subcommand (train, prepare) or --coordinator URL to join a coordinator; see --help")
    })?;
    let config = crate::agent::AgentConfig {
        coordinator,
        token: args.token,
        ca: args.ca,
        drain_timeout: std::time::Duration::from_secs(args.drain_timeout),
        exit_when_idle: args.exit_when_idle.map(std::time::Duration::from_secs),
        device: args.device,
        slots: args.slots,
        pack: args
            .pack
            .unwrap_or(crate::device::default_pack(args.device) as u32),
        cache_dir: private_folder(
            args.cache_dir
                .unwrap_or_else(jetsweep_data::source::default_cache_dir),
        )?,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let shutdown = std::sync::Arc::new(crate::agent::Shutdown::default());
        let signals = shutdown.clone();
        tokio::spawn(async move {
            loop {
                jetsweep_proto::shutdown::signal().await;
                signals.signal();
            }
        });
        crate::agent::run(config, shutdown).await
    })?;
    Ok(())
}
