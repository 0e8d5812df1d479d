//! The worker agent: `jetsweep-worker --coordinator URL` joins a coordinator and runs jobs.
//!
//! It registers, then keeps up to `slots` packs running, in named steps ([`Agent`]): *lease more*
//! (the coordinator fills free slots with packs of up to `pack` jobs, each on its own lease),
//! *train* (each pack on its own task: the dataset fetched and verified if missing, training on a
//! blocking thread, every job's epochs reported, then each job completed or failed — the last
//! completion asking for the next pack), and on SIGTERM or Ctrl-C *drain* (no new work; what is
//! held finishes) or, on a second signal or after the drain timeout, *hand back*. A heartbeat task
//! extends the leases and stops jobs whose lease went stale or whose sweep was cancelled. Every call
//! to the coordinator goes through one typed client (`client.rs`) that owns its retry policy.

mod client;
mod datasets;
mod identity;
mod job;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jetsweep_proto::PROTOCOL_VERSION;
use jetsweep_proto::client as connect;
use jetsweep_proto::sync;
use jetsweep_proto::v1 as pb;
use tokio::task::{JoinHandle, JoinSet};

use crate::WorkerError;
use crate::device::DeviceChoice;
use client::{BACKOFF_MAX, CoordinatorClient, HAND_BACK_GRACE, Leased};
use identity::Identity;

/// How long to wait before asking again when the queue was empty.
const IDLE_POLL: Duration = Duration::from_millis(500);

/// What the agent needs to know.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub coordinator: String,
    /// Sent with every call when the coordinator requires one.
    pub token: Option<String>,
    /// The authority that signed the coordinator's TLS certificate (https:// addresses).
    pub ca: Option<PathBuf>,
    pub device: DeviceChoice,
    /// Packs to run at once (one CPU core each is the fast layout for these small models).
    pub slots: u32,
    /// Most jobs per pack: compatible jobs (same model, batch size, epochs, dataset) train as one
    /// stacked computation ([`crate::train`]).
    pub pack: u32,
    pub cache_dir: PathBuf,
    /// After a stop signal, how long running jobs may take to finish before they are handed back.
    pub drain_timeout: Duration,
    /// Exit once the worker has held no job and been granted none for this long (`None`: never).
    /// For allocations that cost while they wait (a Slurm job array).
    pub exit_when_idle: Option<Duration>,
}

/// Leases this process holds, with each one's stop flag (set when the lease goes stale or the sweep is cancelled).
pub(crate) type Running = Arc<Mutex<HashMap<String, Arc<AtomicBool>>>>;

/// What the process's signals asked for: the first SIGTERM or Ctrl-C stops taking work and lets
/// the running jobs finish (for at most the drain timeout); a second hands them back at once.
#[derive(Default)]
pub struct Shutdown {
    stop: AtomicBool,
    hand_back: AtomicBool,
    changed: tokio::sync::Notify,
}

impl Shutdown {
    /// Records one more stop signal.
    pub fn signal(&self) {
        if self.stop.swap(true, Ordering::SeqCst) {
            self.hand_back.store(true, Ordering::SeqCst);
        }
        self.changed.notify_waiters();
    }

    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    pub fn handing_back(&self) -> bool {
        self.hand_back.load(Ordering::SeqCst)
    }

    /// Completes once a signal asks to stop.
    async fn stop_asked(&self) {
        loop {
            let changed = self.changed.notified();
            if self.stopping() {
                return;
            }
            changed.await;
        }
    }

    /// Completes once a second signal asks to hand the jobs back.
    async fn hand_back_asked(&self) {
        loop {
            let changed = self.changed.notified();
            if self.handing_back() {
                return;
            }
            changed.await;
        }
    }
}

/// How long an exiting worker waits for its goodbye to be taken.
const GOODBYE_WAIT: Duration = Duration::from_secs(2);

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".into())
}

/// Runs the agent until `shutdown` says stop: then it finishes the jobs it holds, or hands them
/// back when asked twice or when `config.drain_timeout` has passed.
pub async fn run(config: AgentConfig, shutdown: Arc<Shutdown>) -> Result<(), WorkerError> {
    crate::device::check(config.device)?;
    let Some(mut agent) = Agent::join(config, shutdown).await? else {
        return Ok(());
    };
    agent.work().await?;
    if !agent.drain().await {
        agent.hand_back().await;
    }
    agent.heartbeat.abort();
    agent.client.leave(GOODBYE_WAIT).await;
    Ok(())
}

/// A registered worker and what it holds.
struct Agent {
    config: AgentConfig,
    client: CoordinatorClient,
    shutdown: Arc<Shutdown>,
    /// Every lease held, with its job's stop flag (shared with the heartbeat task).
    running: Running,
    datasets: Arc<datasets::Datasets>,
    /// One task per pack in training; its output is the packs its last completion brought.
    jobs: JoinSet<Vec<pb::LeasePack>>,
    /// Packs in hand, not started yet: those a completion brought, or a LeaseJobs reply.
    ready: Vec<pb::LeasePack>,
    heartbeat: JoinHandle<()>,
}

impl Agent {
    /// Registers with the coordinator (retrying while it is away) and starts heartbeating. `None`:
    /// a stop signal came first (the worker holds nothing yet, so it just stops).
    async fn join(
        config: AgentConfig,
        shutdown: Arc<Shutdown>,
    ) -> Result<Option<Agent>, WorkerError> {
        let channel = connect::connect_lazy(
            &config.coordinator,
            config.token.as_deref(),
            config.ca.as_deref(),
        )?;
        let rpc = connect::worker_client(channel);
        let register = pb::RegisterRequest {
            protocol_version: PROTOCOL_VERSION,
            host: host_name(),
            device: config.device.to_string(),
            slots: config.slots,
        };
        tracing::info!(coordinator = %config.coordinator, "joining");
        let identity = tokio::select! {
            registered = Identity::register(rpc.clone(), register) => Arc::new(registered?),
            _ = shutdown.stop_asked() => {
                tracing::info!("stopped before registering");
                return Ok(None);
            }
        };
        let client = CoordinatorClient::new(rpc, identity);
        let running: Running = Arc::new(Mutex::new(HashMap::new()));
        let heartbeat = tokio::spawn(heartbeats(client.clone(), running.clone()));
        Ok(Some(Agent {
            datasets: Arc::new(datasets::Datasets::new(&config.cache_dir)),
            config,
            client,
            shutdown,
            running,
            jobs: JoinSet::new(),
            ready: Vec::new(),
            heartbeat,
        }))
    }

    /// Leases more and trains, until a stop signal (or `--exit-when-idle`'s time without work).
    async fn work(&mut self) -> Result<(), WorkerError> {
        // Since when this worker has held no job and been granted none.
        let mut idle_since = Instant::now();
        loop {
            if !self.ready.is_empty() || !self.jobs.is_empty() {
                idle_since = Instant::now();
            } else if let Some(limit) = self
                .config
                .exit_when_idle
                .filter(|l| idle_since.elapsed() >= *l)
            {
                tracing::info!(idle = ?limit, "no work in that time; exiting as --exit-when-idle asked");
                return Ok(());
            }
            self.train_ready();
            while let Some(done) = self.jobs.try_join_next() {
                self.ready.extend(done.unwrap_or_default());
            }
            if !self.ready.is_empty() {
                continue;
            }
            if self.shutdown.stopping() {
                return Ok(());
            }
            let free = self.config.slots.saturating_sub(self.jobs.len() as u32);
            if free == 0 || !self.lease_more(free).await? {
                // Nothing to ask for, or nothing queued: wait, but start at once on whatever a
                // finishing job brings back.
                self.wait_for_a_job_or_poll().await;
            }
        }
    }

    /// Step *lease more*: asks the coordinator to fill `free` slots. True when packs came. Asking
    /// (retried while the coordinator is away) gives way to a stop signal: a lease granted in that
    /// moment and never seen expires on the coordinator.
    async fn lease_more(&mut self, free: u32) -> Result<bool, WorkerError> {
        let leased = tokio::select! {
            leased = self.client.lease(free, self.config.pack) => leased?,
            _ = self.shutdown.stop_asked() => return Ok(true),
        };
        match leased {
            Leased::Packs(packs) => {
                self.ready = packs;
                Ok(!self.ready.is_empty())
            }
            Leased::Later => {
                tokio::select! {
                    _ = tokio::time::sleep(BACKOFF_MAX) => {}
                    _ = self.shutdown.stop_asked() => {}
                }
                Ok(true)
            }
        }
    }

    /// Step *train*: starts every pack in hand, each on its own task, each job with its own stop
    /// flag.
    fn train_ready(&mut self) {
        for pack in std::mem::take(&mut self.ready) {
            let leased: Vec<job::Leased> = pack
                .leases
                .into_iter()
                .map(|lease| {
                    let stop = Arc::new(AtomicBool::new(false));
                    sync::lock(&self.running).insert(lease.lease_id.clone(), stop.clone());
                    job::Leased { lease, stop }
                })
                .collect();
            let lease_ids: Vec<String> = leased.iter().map(|j| j.lease.lease_id.clone()).collect();
            let trained = job::run_pack(
                leased,
                self.config.device,
                self.client.clone(),
                self.datasets.clone(),
                self.shutdown.clone(),
                self.config.pack,
            );
            let running = self.running.clone();
            self.jobs.spawn(async move {
                let next = trained.await;
                let mut running = sync::lock(&running);
                for id in &lease_ids {
                    running.remove(id);
                }
                next
            });
        }
    }

    /// Waits until a running job ends (keeping the packs its completion brought), the idle poll
    /// interval passes, or a stop signal comes, whichever is first.
    async fn wait_for_a_job_or_poll(&mut self) {
        tokio::select! {
            Some(done) = self.jobs.join_next() => self.ready.extend(done.unwrap_or_default()),
            _ = tokio::time::sleep(IDLE_POLL) => {}
            _ = self.shutdown.stop_asked() => {}
        }
    }

    /// Step *drain*: takes no new work and lets the running jobs finish (they complete without
    /// asking for more; a pack granted in the race trains too), for at most the drain timeout.
    /// False when time ran out or a second signal asked to hand the jobs back.
    async fn drain(&mut self) -> bool {
        tracing::info!(
            running = self.jobs.len(),
            drain_timeout = ?self.config.drain_timeout,
            "stopping: finishing the running jobs, taking no new work (a second signal hands them back)"
        );
        let shutdown = self.shutdown.clone();
        tokio::time::timeout(self.config.drain_timeout, async {
            tokio::select! {
                _ = async {
                    while let Some(done) = self.jobs.join_next().await {
                        self.ready.extend(done.unwrap_or_default());
                        self.train_ready();
                    }
                } => true,
                _ = shutdown.hand_back_asked() => false,
            }
        })
        .await
        .unwrap_or(false)
    }

    /// Step *hand back*: stops every running job; each tells the coordinator what it had not
    /// reported and hands its lease back, within [`HAND_BACK_GRACE`]. Whatever the coordinator
    /// has not taken by then is left to expire (it may be away).
    async fn hand_back(&mut self) {
        let held: Vec<Arc<AtomicBool>> = sync::lock(&self.running).values().cloned().collect();
        tracing::warn!(
            jobs = held.len(),
            "handing the running jobs back to the coordinator"
        );
        self.shutdown.hand_back.store(true, Ordering::SeqCst);
        for flag in &held {
            flag.store(true, Ordering::SeqCst);
        }
        if tokio::time::timeout(HAND_BACK_GRACE + Duration::from_secs(1), async {
            while self.jobs.join_next().await.is_some() {}
        })
        .await
        .is_err()
        {
            tracing::warn!("the coordinator did not take every job back; their leases will expire");
            self.jobs.abort_all();
        }
    }
}

/// Extends every held lease on each tick; stops the jobs whose leases came back stale.
async fn heartbeats(client: CoordinatorClient, running: Running) {
    let mut tick = tokio::time::interval(client.heartbeat_interval());
    loop {
        tick.tick().await;
        let lease_ids: Vec<String> = sync::lock(&running).keys().cloned().collect();
        let stale = client.heartbeat(lease_ids).await;
        let held = sync::lock(&running);
        for lease in stale {
            if let Some(flag) = held.get(&lease) {
                tracing::info!(lease = %lease, "lease no longer current; stopping its job");
                flag.store(true, Ordering::SeqCst);
            }
        }
    }
}
