//! `jetsweep serve`: the coordinator process.

use std::path::PathBuf;

use clap::Args;
use tokio::net::TcpListener;

use crate::server::{Coordinator, serve};
use crate::store::Store;

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
    let store = Store::open(&args.state)?;
    let listener = TcpListener::bind(&args.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
    let addr = listener.local_addr()?;
    let mut coordinator = Coordinator::new(store, data_dir.clone())?;
    match args.token.as_deref().filter(|t| !t.is_empty()) {
        Some(token) => coordinator = coordinator.require_token(token)?,
        None if !addr.ip().is_loopback() => eprintln!(
            "jetsweep: warning: listening on {addr} without a token: anyone who can reach it can submit, cancel and report. Start with --token (or JETSWEEP_TOKEN) to require one"
        ),
        None => {}
    }
    println!("http://{addr}");
    eprintln!(
        "jetsweep: coordinator on http://{addr}, state {}, datasets {}",
        args.state.display(),
        data_dir.display()
    );
    serve(listener, coordinator, shutdown_signal()).await?;
    eprintln!("jetsweep: coordinator stopped");
    Ok(())
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
