//! `jetsweep run FILE --workers N`: the embedded mode. A coordinator in this process (on 127.0.0.1,
//! over the same gRPC path as a cluster), N `jetsweep-worker` processes on this machine, progress on
//! screen, the results table at the end.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use clap::Args;
use tokio::net::TcpListener;

use super::{Logging, Remote, rpc_error};
use crate::client::render::results::{Format, render};
use crate::clock;
use crate::server::{StartConfig, Started, start};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The sweep file.
    pub file: PathBuf,
    /// Local worker processes to start (one per core is the fast layout).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub workers: u32,
    /// Most jobs each worker trains together as one pack (jobs of one model, batch size, epoch
    /// count and dataset, each with its own seed, learning rate and result; 1: one at a time).
    /// Default: the worker's own (16 on a CPU).
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u32).range(1..=jetsweep_proto::limits::MAX_PACK as i64))]
    pub pack: Option<u32>,
    /// State file; running the same sweep again with it reuses finished jobs. Its folder also
    /// holds the prepared datasets and the logs (`state.log`: the coordinator's, in full;
    /// `state.workers.log`: the workers').
    #[arg(long, default_value = "jetsweep-state/state.db")]
    pub state: PathBuf,
    /// Where the dashboard listens: an address on this machine's loopback (port 0: any free
    /// one). For other machines, use `jetsweep serve` with TLS, or `ssh -L` to this address.
    #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR")]
    pub listen: std::net::SocketAddr,
    /// How to print the results.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Also write the sweep's report (HTML, Markdown, figures) into this folder when it ends.
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
    #[command(flatten)]
    pub logging: Logging,
}

/// The coordinator's full log beside the state file (`state.log`), its folder made if needed.
pub fn open_log(args: &RunArgs) -> anyhow::Result<std::fs::File> {
    let path = args.state.with_extension("log");
    if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(folder).map_err(|e| {
            anyhow::anyhow!("cannot make the state folder {}: {e}", folder.display())
        })?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| anyhow::anyhow!("cannot open the log {}: {e}", path.display()))
}

/// The folder of the sweep file, absolute.
fn sweep_folder(file: &std::path::Path) -> anyhow::Result<PathBuf> {
    let folder = match file.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(folder) => folder.to_path_buf(),
        None => PathBuf::from("."),
    };
    folder
        .canonicalize()
        .map_err(|e| anyhow::anyhow!("the sweep file's folder {}: {e}", folder.display()))
}

/// The state file's folder as the user would type it (`jetsweep-state/`).
fn state_folder(state: &std::path::Path) -> String {
    match state.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(folder) => format!("{}/", folder.display()),
        None => "the current folder".into(),
    }
}

/// `jetsweep-worker` next to this executable, or `$JETSWEEP_WORKER_BIN`.
fn worker_binary() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("JETSWEEP_WORKER_BIN") {
        return Ok(PathBuf::from(p));
    }
    let me = std::env::current_exe()?;
    let sibling = me.with_file_name("jetsweep-worker");
    anyhow::ensure!(
        sibling.is_file(),
        "no jetsweep-worker beside {} (build both with `cargo build --release`, or set JETSWEEP_WORKER_BIN)",
        me.display()
    );
    Ok(sibling)
}

/// The local worker processes. They are in a process group of their own (a Ctrl-C at the
/// terminal reaches `run` alone, which decides what they do) and die with `run` however it ends:
/// killed when this is dropped, and sent SIGTERM by the kernel if `run` itself is killed.
struct LocalWorkers(Vec<Child>);

impl LocalWorkers {
    fn start(&mut self, mut command: Command) -> std::io::Result<()> {
        command.process_group(0);
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        self.0.push(command.spawn()?);
        Ok(())
    }

    /// Asks every worker to stop taking work and finish (or hand back) what it runs.
    fn terminate(&self) {
        for child in &self.0 {
            // SAFETY: kill(2) on a child process this struct owns and has not reaped.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
            }
        }
    }

    /// Waits until every worker has exited.
    async fn exited(&mut self) {
        while self.0.iter_mut().any(|c| matches!(c.try_wait(), Ok(None))) {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

impl Drop for LocalWorkers {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What `run` refuses before it makes anything (its state folder, its log): a sweep file it cannot
/// read or parse, an address off loopback.
pub fn preflight(args: &RunArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.file)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", args.file.display()))?;
    let access = crate::access::DataAccess::LocalFrom(sweep_folder(&args.file)?);
    crate::sweep::SweepSpec::parse_with(&text, &access)?;
    // Its token travels in plain HTTP: the run's dashboard stays on this machine.
    anyhow::ensure!(
        args.listen.ip().is_loopback(),
        "--listen {}: `run` serves on this machine's loopback only (its token would cross the network unencrypted); for other machines use `jetsweep serve` with TLS, or `ssh -L {}:127.0.0.1:{} HOST` to reach this one",
        args.listen,
        args.listen.port(),
        args.listen.port()
    );
    Ok(())
}

/// Runs the sweep (after [`preflight`]).
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.file)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", args.file.display()))?;
    let access = crate::access::DataAccess::LocalFrom(sweep_folder(&args.file)?);
    let worker_bin = worker_binary()?;
    let data_dir = args.state.with_extension("data");
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
    // A token of this run's own: its port is visible to every local user (`ss -ltn`), and the
    // coordinator reads any file the runner can. Only this process and its workers hold it (the
    // workers through their environment, which other users cannot read).
    let token = crate::credentials::new_token().map_err(|e| anyhow::anyhow!("{e}"))?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let started = start(
        StartConfig {
            state: args.state.clone(),
            data_dir: data_dir.clone(),
            clock: clock::system(),
            // The submitter is the local user: any file they can read; a relative dataset path
            // is from the sweep file's folder, as a path written in a file reads.
            access,
            token: Some(token.clone()),
            credentials: None,
            tls: None,
            holder: format!("jetsweep run {}, serving", args.file.display()),
            connections: Default::default(),
            metrics_public: false,
        },
        listener,
        async {
            let _ = stopped.await;
        },
    )
    .await?;
    // The lock is held until the end: a second `run` or `serve` on this state file is refused.
    let Started {
        url,
        served: server,
        lock: _lock,
        coordinator,
        ..
    } = started;

    // The dashboard first: a link that logs the browser in with the run's token (it lives as
    // long as this run, and only this terminal sees it).
    eprintln!(
        "jetsweep: dashboard at {url}/login?token={token} (state, datasets and logs in {})",
        state_folder(&args.state)
    );
    // The embedded coordinator listens on loopback only, with the run's own token.
    let remote = Remote {
        coordinator: url.clone(),
        token: Some(token.clone()),
        ca: None,
    };
    tracing::info!(file = %args.file.display(), "preparing the dataset and submitting");
    let sweep = super::submit::submit(&remote, text).await?;
    eprintln!(
        "jetsweep: sweep {}: {} jobs{} · {url}/sweeps/{}",
        sweep.sweep_id,
        sweep.total,
        if sweep.reused > 0 {
            format!(" ({} finished in earlier runs, reused)", sweep.reused)
        } else {
            String::new()
        },
        sweep.sweep_id
    );

    let log_path = args.state.with_extension("workers.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)?;
    let mut workers = LocalWorkers(Vec::new());
    for _ in 0..args.workers {
        let mut command = Command::new(&worker_bin);
        command
            .args(["--coordinator", &url, "--slots", "1", "--cache-dir"])
            .arg(&data_dir);
        if let Some(k) = args.pack {
            command.args(["--pack", &k.to_string()]);
        }
        command
            .env("JETSWEEP_TOKEN", &token)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log.try_clone()?);
        workers
            .start(command)
            .map_err(|e| anyhow::anyhow!("cannot start {}: {e}", worker_bin.display()))?;
    }
    tracing::info!(workers = args.workers, log = %log_path.display(), "local workers started");

    let mut client = remote.connect().await?;
    let finished = tokio::select! {
        last = super::progress::follow(&mut client, &sweep.sweep_id) => Some(last?),
        _ = jetsweep_proto::shutdown::signal() => None,
    };
    let Some(last) = finished else {
        // Interrupted: the workers finish (or hand back) what they hold; a second signal stops
        // everything at once. What finished is kept: running the same command again reuses it.
        eprintln!(
            "jetsweep: stopping: the workers finish the jobs they hold (Ctrl-C again to stop at once)"
        );
        workers.terminate();
        let at_once = tokio::select! {
            _ = workers.exited() => false,
            _ = jetsweep_proto::shutdown::signal() => true,
        };
        drop(workers);
        if at_once {
            // The workers are gone; their jobs go back to the queue now, not when their leases
            // would have expired (this run owns the coordinator).
            let released = coordinator
                .release_all_leases("`jetsweep run` was stopped at once (a second Ctrl-C)")
                .await?;
            eprintln!("jetsweep: stopped at once; {released} running job(s) handed back");
        }
        let results = client.results(&sweep.sweep_id).await.map_err(rpc_error)?;
        let now = client.sweep(&sweep.sweep_id).await.map_err(rpc_error)?;
        let _ = stop.send(());
        let _ = server.await;
        print!("{}", render(&results, args.format));
        anyhow::bail!(
            "interrupted: {} of {} jobs done; `jetsweep run {} --state {}` runs the rest (finished jobs are reused)",
            now.done,
            now.total,
            args.file.display(),
            args.state.display()
        );
    };
    let results = client.results(&sweep.sweep_id).await.map_err(rpc_error)?;
    drop(workers);
    if let Some(dir) = &args.report {
        super::report::write(&mut client, &sweep.sweep_id, dir).await?;
    }
    let _ = stop.send(());
    let _ = server.await;
    print!("{}", render(&results, args.format));
    eprintln!(
        "jetsweep: {}: {} done, {} failed, {} cancelled",
        last.sweep_id, last.done, last.failed, last.cancelled
    );
    anyhow::ensure!(
        last.failed == 0,
        "{} job(s) failed: `jetsweep status {}` shows why (log: {})",
        last.failed,
        last.sweep_id,
        log_path.display()
    );
    Ok(())
}
