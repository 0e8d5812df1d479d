//! The `jetsweep` command line, thin: each verb parses its arguments, calls the coordinator through
//! [`crate::client::SweepClient`] (or, for `serve` and `run`, starts one with
//! [`crate::server::start`]) and prints. A file per verb or per few related verbs. Data goes to
//! stdout, progress and logs to stderr.

mod credentials;
mod model;
mod progress;
mod report;
mod results;
mod run;
mod serve;
mod status;
mod submit;

use clap::{Parser, Subcommand};
use jetsweep_proto::logging::{self, LogFormat};

use crate::client::SweepClient;

/// jetsweep: hyperparameter sweeps of MASE's JSC models across a cluster.
///
/// `jetsweep run sweeps/lab1-batch-size.toml` runs a sweep on this machine. For a cluster, start
/// `jetsweep serve` on one machine, `jetsweep-worker --coordinator http://HOST:7070` on each worker
/// machine, and `jetsweep submit FILE` from anywhere.
#[derive(Debug, Parser)]
#[command(name = "jetsweep", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the coordinator: the gRPC services over a SQLite state file.
    Serve(serve::ServeArgs),
    /// Submit a sweep file; prints the sweep's id.
    Submit(submit::SubmitArgs),
    /// Sweeps, or one sweep's jobs: state, epoch k/N, worker, latest metrics, attempts.
    Status(status::StatusArgs),
    /// Workers: host, device, slots, last heartbeat, jobs held.
    Workers(status::WorkersArgs),
    /// Per grid point (or per seed): seeds by state, test accuracy, validation at the best epoch,
    /// training time; the best point chosen on validation.
    Results(results::ResultsArgs),
    /// Write a sweep's report: HTML and Markdown pages with figures (SVG and PNG), results.json.
    Report(report::ReportArgs),
    /// Cancel a sweep: queued jobs at once, running ones at their next report.
    Cancel(submit::CancelArgs),
    /// Delete a finished or cancelled sweep and what only it holds (jobs, epochs, kept models,
    /// its prepared dataset when no other sweep uses it); jobs other sweeps hold stay.
    Delete(submit::DeleteArgs),
    /// Follow a sweep with a progress bar until it ends; exits non-zero if any job failed.
    Watch(status::WatchArgs),
    /// Run a sweep on this machine: a coordinator and N local workers, progress, then the results.
    Run(run::RunArgs),
    /// Credentials for `serve --tokens FILE`: `jetsweep token new NAME ROLE`.
    Token(credentials::TokenArgs),
    /// Who submitted, cancelled and invalidated what, newest first.
    Audit(credentials::AuditArgs),
    /// Forget what a distrusted worker produced and train it again elsewhere (admins only).
    Invalidate(credentials::InvalidateArgs),
    /// Export a kept model (default: the best point's best seed) to safetensors with MASE's
    /// layer names, and the dataset's scaler beside it.
    Model(model::ModelArgs),
}

/// Where the coordinator is, for the client verbs.
#[derive(Debug, Clone, clap::Args)]
pub struct Remote {
    /// Coordinator address.
    #[arg(
        long,
        env = "JETSWEEP_COORDINATOR",
        default_value = "http://127.0.0.1:7070",
        value_name = "URL"
    )]
    pub coordinator: String,
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
}

impl Remote {
    pub async fn connect(&self) -> anyhow::Result<SweepClient> {
        Ok(
            SweepClient::connect(&self.coordinator, self.token.as_deref(), self.ca.as_deref())
                .await?,
        )
    }
}

/// How a long-running verb (`serve`, `run`) logs.
#[derive(Debug, Clone, clap::Args)]
pub struct Logging {
    /// Log lines as readable text or as one JSON object each (filter with JETSWEEP_LOG or
    /// RUST_LOG, e.g. `JETSWEEP_LOG=debug` to follow every job).
    #[arg(long, default_value = "text", value_name = "text|json")]
    pub log_format: LogFormat,
}

/// A gRPC error as a user reads it.
pub fn rpc_error(s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{}", s.message())
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Token(a) = cli.command {
        return credentials::token(a);
    }
    match &cli.command {
        // `run` shares the terminal with its progress: warnings there, the full log in a file.
        Command::Run(a) => {
            run::preflight(a)?;
            logging::init_with_file(a.logging.log_format, run::open_log(a)?)
        }
        Command::Serve(a) => logging::init(a.logging.log_format),
        _ => logging::init(LogFormat::Text),
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve(a) => serve::run(a).await,
            Command::Submit(a) => submit::run(a).await,
            Command::Status(a) => status::run(a).await,
            Command::Workers(a) => status::workers(a).await,
            Command::Results(a) => results::run(a).await,
            Command::Report(a) => report::run(a).await,
            Command::Cancel(a) => submit::cancel(a).await,
            Command::Watch(a) => status::watch(a).await,
            Command::Run(a) => run::run(a).await,
            Command::Audit(a) => credentials::audit(a).await,
            Command::Invalidate(a) => credentials::invalidate(a).await,
            Command::Delete(a) => submit::delete(a).await,
            Command::Model(a) => model::run(a).await,
            Command::Token(_) => unreachable!("handled before the runtime starts"),
        }
    })
}
