//! `jetsweep serve`: the coordinator process.

use std::path::PathBuf;

use clap::Args;
use tokio::net::TcpListener;

use super::Logging;
use crate::access::DataAccess;
use crate::clock;
use crate::credentials::Credentials;
use crate::server::{StartConfig, serve_scaler, start};

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
    /// The folder sweeps may name dataset files in (relative names are relative to it). Without
    /// it, sweeps may use only the built-in sources (synthetic, openml): a sweep comes from a
    /// client, and the files are this machine's.
    #[arg(long, value_name = "DIR")]
    pub data_root: Option<PathBuf>,
    /// A shared secret (16 characters or more) every client and worker may present (their --token
    /// or JETSWEEP_TOKEN): it is an admin's, allowed everything. Without it or --tokens, anyone who
    /// can reach the address can submit, cancel and report.
    #[arg(
        long,
        env = "JETSWEEP_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
    /// Credentials with roles, one a line: `NAME ROLE sha256:HASH` (`jetsweep token new NAME ROLE`
    /// prints a token and its line). Roles: admin (everything), user (submit; cancel its own
    /// sweeps; read all), viewer (read only), worker (take and report jobs, nothing else). The file
    /// holds hashes, never tokens; it must not be writable by others.
    #[arg(long, value_name = "FILE")]
    pub tokens: Option<PathBuf>,
    /// PEM certificate (chain) to serve TLS with, with --tls-key. Clients then use https:// (and
    /// --ca FILE when the certificate is not from a public authority).
    #[arg(long, requires = "tls_key", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Serve off loopback without TLS or without a token: only on a network where everyone who can
    /// reach the address may submit, cancel and report, and read the token in passing.
    #[arg(long)]
    pub insecure: bool,
    /// Also serve KEDA's external scaler here (e.g. 0.0.0.0:7071), for a Kubernetes ScaledObject
    /// that scales workers with the queue: its metric is queued + running jobs. It answers without
    /// the token (KEDA sends none), tells only those counts and changes nothing; keep the address
    /// inside the cluster.
    #[arg(long, value_name = "ADDR")]
    pub scaler_listen: Option<String>,
    /// Most client connections open at once [default: what the open-file limit allows, up to
    /// 16384]. Connections past it are closed as they arrive (counted in /metrics).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: Option<u32>,
    /// Most connections open at once from one client address (workers behind one NAT address
    /// count together).
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections_per_address: u32,
    /// Seconds a connection may pass with nothing sent either way before it is closed (live
    /// workers and pages are pinged every 30 s or less).
    #[arg(long, value_name = "SECONDS", default_value_t = 120, value_parser = clap::value_parser!(u64).range(60..=86_400))]
    pub idle_timeout: u64,
    /// Serve /metrics without credentials, for a Prometheus that cannot send a bearer token (the
    /// numbers are counts and timings: no names, no results). Everything else still needs one.
    #[arg(long)]
    pub metrics_public: bool,
    #[command(flatten)]
    pub logging: Logging,
}

fn read(path: &std::path::Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path)
        .map_err(|e| anyhow::anyhow!("cannot read the {what} {}: {e}", path.display()))
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| args.state.with_extension("data"));
    let listener = TcpListener::bind(&args.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
    let addr = listener.local_addr()?;
    let scaler = match &args.scaler_listen {
        Some(at) => Some(
            TcpListener::bind(at)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {at} (--scaler-listen): {e}"))?,
        ),
        None => None,
    };
    let token = args.token.as_deref().filter(|t| !t.is_empty());
    let credentials = match &args.tokens {
        Some(path) => Some(Credentials::read(path).map_err(|e| anyhow::anyhow!("--tokens {e}"))?),
        None => None,
    };
    let guarded = token.is_some() || credentials.is_some();
    let tls = args.tls_cert.is_some();
    let secured = tls && guarded;
    if !addr.ip().is_loopback() && !secured {
        let missing = match (tls, guarded) {
            (false, false) => "TLS and a token",
            (false, true) => "TLS (the token would cross the network in clear)",
            _ => "a token (anyone who can reach it could submit, cancel and report)",
        };
        anyhow::ensure!(
            args.insecure,
            "refusing to serve on {addr} without {missing}: give --tls-cert/--tls-key and --token (or JETSWEEP_TOKEN) or --tokens, or --insecure on a network you trust"
        );
        tracing::warn!(%addr, missing, "serving off loopback insecurely, as --insecure asked");
    }
    let access = match &args.data_root {
        Some(root) => DataAccess::under(root)?,
        None => DataAccess::BuiltInOnly,
    };
    let tls_files = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some((read(cert, "TLS certificate")?, read(key, "TLS key")?)),
        _ => None,
    };
    let mut limits = crate::server::connections::Limits::default();
    if let Some(total) = args.max_connections {
        limits.total = total as usize;
    }
    limits.per_address = args.max_connections_per_address as usize;
    limits.idle = std::time::Duration::from_secs(args.idle_timeout);
    // One stop signal ends both servers.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        jetsweep_proto::shutdown::signal().await;
        let _ = stop.send(true);
    });
    let stopping = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        }
    };
    let started = start(
        StartConfig {
            state: args.state.clone(),
            data_dir: data_dir.clone(),
            clock: clock::system(),
            access,
            token: token.map(str::to_string),
            credentials,
            tls: tls_files,
            holder: "serving".into(),
            connections: limits,
            metrics_public: args.metrics_public,
        },
        listener,
        stopping(),
    )
    .await?;
    println!("{}", started.url);
    tracing::info!(
        url = %started.url,
        state = %args.state.display(),
        datasets = %data_dir.display(),
        "coordinator serving"
    );
    let scaler = match scaler {
        Some(listener) => {
            let addr = listener.local_addr()?;
            tracing::info!(%addr, "KEDA external scaler serving (plaintext, no token)");
            let served = serve_scaler(listener, started.coordinator.clone(), stopping());
            Some(tokio::spawn(served))
        }
        None => None,
    };
    started.served.await??;
    if let Some(scaler) = scaler {
        scaler.await??;
    }
    tracing::info!("coordinator stopped");
    Ok(())
}
