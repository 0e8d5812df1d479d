//! `jetsweep serve`: the coordinator process.

use std::path::PathBuf;

use clap::Args;
use tokio::net::TcpListener;

use super::Logging;
use crate::clock;
use crate::server::{Coordinator, serve};
use crate::store::Store;
use crate::store::lock::StateLock;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; the bound address is printed on stdout).
    #[arg(long, default_value = "127.0.0.1:7070")]
    pub listen: String,
    /// The state file (SQLite). Everything the coordinator accepted is in it; restart with the same file to carry on.
    #[arg(long, default_value = "jetsweep-state/state.db")]
    pub state: PathBuf,
    /// Folder for prepared datasets and downloads [default: beside the state file].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// A shared secret every client and worker must present (their --token or JETSWEEP_TOKEN).
    /// Without one, anyone who can reach the address can submit, cancel and report.
    #[arg(
        long,
        env = "JETSWEEP_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
    #[command(flatten)]
    pub logging: Logging,
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    if let Some(dir) = args.state.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    }
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| args.state.with_extension("data"));
    let mut lock = StateLock::acquire(&args.state)?;
    let store = Store::open(&args.state)?;
    let listener = TcpListener::bind(&args.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
    let addr = listener.local_addr()?;
    let mut coordinator = Coordinator::new(store, data_dir.clone(), clock::system())?;
    match args.token.as_deref().filter(|t| !t.is_empty()) {
        Some(token) => coordinator = coordinator.require_token(token)?,
        None if !addr.ip().is_loopback() => tracing::warn!(
            %addr,
            "listening off loopback without a token: anyone who can reach it can submit, cancel and report. Start with --token (or JETSWEEP_TOKEN) to require one"
        ),
        None => {}
    }
    lock.describe(&format!("serving http://{addr}"))?;
    println!("http://{addr}");
    tracing::info!(
        url = %format!("http://{addr}"),
        state = %args.state.display(),
        datasets = %data_dir.display(),
        "coordinator serving"
    );
    serve(listener, coordinator, jetsweep_proto::shutdown::signal()).await?;
    tracing::info!("coordinator stopped");
    Ok(())
}
