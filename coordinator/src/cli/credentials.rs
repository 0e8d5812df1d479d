//! `jetsweep token new NAME ROLE` (a credential for `serve --tokens`) and `jetsweep audit` (who
//! submitted and cancelled what).

use clap::{Args, Subcommand};

use super::{Remote, rpc_error};
use crate::credentials::{Role, file_line, new_token};

#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    pub command: TokenCommand,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a credential: prints a fresh token on the first line (give it to its holder, e.g. as
    /// JETSWEEP_TOKEN) and, on the second, the line to add to the coordinator's --tokens file (the
    /// token's hash, never the token).
    New {
        /// The credential's name: who holds it (1-64 of A-Z a-z 0-9 . _ - @). Sweeps and the audit
        /// log name it.
        name: String,
        /// admin (everything), user (submit; cancel its own sweeps; read all), viewer (read only),
        /// or worker (take and report jobs, nothing else).
        role: String,
    },
}

pub fn token(args: TokenArgs) -> anyhow::Result<()> {
    match args.command {
        TokenCommand::New { name, role } => {
            let role = Role::parse(&role).map_err(|e| anyhow::anyhow!("{e}"))?;
            let token = new_token().map_err(|e| anyhow::anyhow!("{e}"))?;
            let line = file_line(&name, role, &token).map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("{token}");
            println!("{line}");
            Ok(())
        }
    }
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only this sweep's entries.
    #[arg(long)]
    pub sweep: Option<String>,
    /// At most this many entries, newest first.
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    #[command(flatten)]
    pub remote: Remote,
}

pub async fn audit(args: AuditArgs) -> anyhow::Result<()> {
    let mut client = args.remote.connect().await?;
    let entries = client
        .audit(args.sweep.as_deref().unwrap_or(""), args.limit)
        .await
        .map_err(rpc_error)?;
    println!(
        "{:<20} {:<20} {:<7} {:<10} {:<28} DETAIL",
        "WHEN (UTC)", "WHO", "ROLE", "ACTION", "SWEEP"
    );
    for e in entries {
        println!(
            "{:<20} {:<20} {:<7} {:<10} {:<28} {}",
            crate::client::render::words::utc(e.at_unix_ms),
            crate::client::render::words::printable(&e.who),
            crate::client::render::words::printable(&e.role),
            crate::client::render::words::printable(&e.action),
            crate::client::render::words::printable(&e.sweep_id),
            crate::client::render::words::printable(&e.detail)
        );
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct InvalidateArgs {
    /// The worker's name, as `jetsweep workers` shows it (e.g. gpu-node-3). Every epoch it
    /// reported is deleted, and every job it touched that is done, paused, queued or running is
    /// trained again from scratch by another worker. Remove its credential first (or stop it),
    /// or it may take the jobs again.
    #[arg(long, value_name = "NAME")]
    pub worker: String,
    #[command(flatten)]
    pub remote: Remote,
}

pub async fn invalidate(args: InvalidateArgs) -> anyhow::Result<()> {
    let mut client = args.remote.connect().await?;
    let done = client
        .invalidate_worker(&args.worker)
        .await
        .map_err(rpc_error)?;
    println!(
        "worker {}: {} attempts invalidated, {} epoch reports deleted, {} jobs queued again",
        crate::client::render::words::printable(&args.worker),
        done.attempts,
        done.epochs,
        done.requeued
    );
    if !done.sweep_ids.is_empty() {
        println!(
            "sweeps with jobs queued again: {}",
            done.sweep_ids
                .iter()
                .map(|s| crate::client::render::words::printable(s))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}
