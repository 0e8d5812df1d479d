//! The worker agent: `jetsweep-worker --coordinator URL` joins a coordinator and runs jobs.
//!
//! It registers, then keeps up to `slots` packs running: it leases work (up to `pack` compatible jobs
//! per slot, each on its own lease), makes sure it has the jobs' dataset (fetching and verifying it
//! if not), trains each pack on a blocking thread, and reports every job's epochs, then completes or
//! fails each job. A heartbeat task extends its leases and stops jobs whose lease
//! went stale or whose sweep was cancelled. When the coordinator is away it retries with back-off and
//! carries on; on SIGTERM or Ctrl-C it takes no new work and finishes what it holds.

mod datasets;
mod identity;
mod job;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jetsweep_proto::auth::Channel;
use jetsweep_proto::sync;
use jetsweep_proto::v1 as pb;
use jetsweep_proto::v1::worker_service_client::WorkerServiceClient;
use jetsweep_proto::{PROTOCOL_VERSION, client};
use tokio::task::JoinSet;

use crate::WorkerError;
use crate::device::DeviceChoice;
use identity::Identity;

/// How long to wait before asking again when the queue was empty.
const IDLE_POLL: Duration = Duration::from_millis(500);
/// Back-off bounds while the coordinator cannot be reached: retry soon, but not in a tight loop.
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

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

/// How long the worker, told to stop at once, waits for the coordinator to take back the jobs it
/// hands back before it exits anyway (their leases then expire): it never hangs on a coordinator
/// that is away.
const HAND_BACK_GRACE: Duration = Duration::from_secs(5);

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

/// Retries `f` while the coordinator is unreachable, with exponential back-off; other errors return.
pub(crate) async fn with_retry<T, F, Fut>(what: &str, f: F) -> Result<T, tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    retry_while(what, unreachable, f).await
}

/// Retries `f` on every error but a refusal that no retry can change (a stale lease, a request the
/// coordinator finds invalid, a wrong token): for a finished result, which must not be dropped
/// because the coordinator had a bad moment.
pub(crate) async fn with_retry_unless_refused<T, F, Fut>(
    what: &str,
    f: F,
) -> Result<T, tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    retry_while(
        what,
        |s| {
            !matches!(
                s.code(),
                tonic::Code::FailedPrecondition
                    | tonic::Code::InvalidArgument
                    | tonic::Code::Unauthenticated
                    | tonic::Code::PermissionDenied
                    | tonic::Code::NotFound
                    | tonic::Code::OutOfRange
            )
        },
        f,
    )
    .await
}

/// The coordinator (or the way to it) is down: try again later.
fn unreachable(s: &tonic::Status) -> bool {
    matches!(
        s.code(),
        tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled
    )
}

async fn retry_while<T, F, Fut>(
    what: &str,
    retryable: impl Fn(&tonic::Status) -> bool,
    mut f: F,
) -> Result<T, tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let mut delay = BACKOFF_MIN;
    loop {
        match f().await {
            Err(s) if retryable(&s) => {
                tracing::warn!(call = what, code = ?s.code(), status = %s.message(), retry_in = ?delay, "coordinator call failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(BACKOFF_MAX);
            }
            other => return other,
        }
    }
}

/// A fresh id for a request that may be retried: the coordinator answers every retry of it with
/// the grant of the first try. Unique within this process (the coordinator keys it by worker id).
pub(crate) fn next_request_id() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    format!("r{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

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
    let channel = client::connect_lazy(
        &config.coordinator,
        config.token.as_deref(),
        config.ca.as_deref(),
    )?;
    let client = client::worker_client(channel);
    let register = pb::RegisterRequest {
        protocol_version: PROTOCOL_VERSION,
        host: host_name(),
        device: config.device.to_string(),
        slots: config.slots,
    };
    tracing::info!(coordinator = %config.coordinator, "joining");
    // A worker told to stop while the coordinator is away stops: it holds nothing yet.
    let identity = tokio::select! {
        registered = Identity::register(client.clone(), register) => Arc::new(registered?),
        _ = shutdown.stop_asked() => {
            tracing::info!("stopped before registering");
            return Ok(());
        }
    };

    let running: Running = Arc::new(Mutex::new(HashMap::new()));
    let datasets = Arc::new(datasets::Datasets::new(&config.cache_dir));
    let heartbeat = tokio::spawn(heartbeats(
        client.clone(),
        identity.clone(),
        running.clone(),
    ));
    let starter = Starter {
        client: client.clone(),
        datasets,
        running: running.clone(),
        device: config.device,
        identity: identity.clone(),
        shutdown: shutdown.clone(),
        pack: config.pack,
    };
    let mut jobs: JoinSet<Vec<pb::LeasePack>> = JoinSet::new();
    // Packs in hand, not started yet: those a completion brought back, or a LeaseJobs reply.
    let mut ready: Vec<pb::LeasePack> = Vec::new();
    // Since when this worker has held no job and been granted none.
    let mut idle_since = Instant::now();
    loop {
        if !ready.is_empty() || !jobs.is_empty() {
            idle_since = Instant::now();
        } else if let Some(limit) = config.exit_when_idle.filter(|l| idle_since.elapsed() >= *l) {
            tracing::info!(idle = ?limit, "no work in that time; exiting as --exit-when-idle asked");
            break;
        }
        for pack in std::mem::take(&mut ready) {
            starter.start(&mut jobs, pack);
        }
        while let Some(done) = jobs.try_join_next() {
            ready.extend(done.unwrap_or_default());
        }
        if !ready.is_empty() {
            continue;
        }
        if shutdown.stopping() {
            break;
        }
        let free = config.slots.saturating_sub(jobs.len() as u32);
        if free == 0 {
            wait_for_a_job_or_poll(&mut jobs, &mut ready, &shutdown).await;
            continue;
        }
        let request = pb::LeaseJobsRequest {
            worker_id: identity.id(),
            slots: free,
            request_id: next_request_id(),
            pack_size: config.pack,
        };
        // Asking for work (retrying while the coordinator is away) gives way to a stop signal: a
        // lease granted in that moment and never seen expires on the coordinator.
        let asked = Instant::now();
        let leased = tokio::select! {
            leased = with_retry("lease", || {
                let mut c = client.clone();
                let r = request.clone();
                async move { c.lease_jobs(r).await }
            }) => leased,
            _ = shutdown.stop_asked() => continue,
        };
        match leased {
            Ok(r) => {
                ready = r.into_inner().packs;
                lease_round_trip("lease_jobs", asked, &ready);
            }
            Err(s) if s.code() == tonic::Code::NotFound => {
                identity.register_again(&request.worker_id).await?;
                continue;
            }
            Err(s) => {
                tracing::warn!(status = %s.message(), retry_in = ?BACKOFF_MAX, "leasing failed");
                tokio::select! {
                    _ = tokio::time::sleep(BACKOFF_MAX) => {}
                    _ = shutdown.stop_asked() => {}
                }
                continue;
            }
        };
        if ready.is_empty() {
            // Nothing queued: wait, but start at once on whatever a finishing job brings back.
            wait_for_a_job_or_poll(&mut jobs, &mut ready, &shutdown).await;
        }
    }
    tracing::info!(
        running = jobs.len(),
        drain_timeout = ?config.drain_timeout,
        "stopping: finishing the running jobs, taking no new work (a second signal hands them back)"
    );
    // Jobs complete without leasing more now; any lease granted in the race is finished too.
    let drained = tokio::time::timeout(config.drain_timeout, async {
        tokio::select! {
            _ = async {
                while let Some(done) = jobs.join_next().await {
                    for pack in done.unwrap_or_default() {
                        starter.start(&mut jobs, pack);
                    }
                }
            } => true,
            _ = shutdown.hand_back_asked() => false,
        }
    })
    .await
    .unwrap_or(false);
    if !drained {
        let held: Vec<(String, Arc<AtomicBool>)> = sync::lock(&running)
            .iter()
            .map(|(lease, flag)| (lease.clone(), flag.clone()))
            .collect();
        tracing::warn!(
            jobs = held.len(),
            "handing the running jobs back to the coordinator"
        );
        shutdown.hand_back.store(true, Ordering::SeqCst);
        for (_, flag) in &held {
            flag.store(true, Ordering::SeqCst);
        }
        // Each job tells the coordinator within the grace; whatever has not by then is left to
        // expire (the coordinator may be away).
        if tokio::time::timeout(HAND_BACK_GRACE + Duration::from_secs(1), async {
            while jobs.join_next().await.is_some() {}
        })
        .await
        .is_err()
        {
            tracing::warn!("the coordinator did not take every job back; their leases will expire");
            jobs.abort_all();
        }
    }
    heartbeat.abort();
    Ok(())
}

/// Logs (at debug level) how long a call that asks for work took, and how many packs and leases it
/// brought: the lease latency a deployment's network adds
/// (`JETSWEEP_LOG=jetsweep_worker::agent=debug`).
pub(crate) fn lease_round_trip(rpc: &'static str, asked: Instant, packs: &[pb::LeasePack]) {
    tracing::debug!(
        rpc,
        packs = packs.len(),
        leases = packs.iter().map(|p| p.leases.len()).sum::<usize>(),
        took_us = asked.elapsed().as_micros() as u64,
        "lease round trip"
    );
}

/// Waits until a running job ends (keeping the leases its completion brought back), the idle poll
/// interval passes, or a stop signal comes, whichever is first.
async fn wait_for_a_job_or_poll(
    jobs: &mut JoinSet<Vec<pb::LeasePack>>,
    ready: &mut Vec<pb::LeasePack>,
    shutdown: &Shutdown,
) {
    tokio::select! {
        Some(done) = jobs.join_next() => ready.extend(done.unwrap_or_default()),
        _ = tokio::time::sleep(IDLE_POLL) => {}
        _ = shutdown.stop_asked() => {}
    }
}

/// Starts leased packs, each on its own task, each job with its own stop flag.
struct Starter {
    client: WorkerServiceClient<Channel>,
    datasets: Arc<datasets::Datasets>,
    running: Running,
    device: DeviceChoice,
    identity: Arc<Identity>,
    shutdown: Arc<Shutdown>,
    pack: u32,
}

impl Starter {
    /// Runs `pack` on a task of `jobs`; the task's output is the packs its last completion
    /// brought back.
    fn start(&self, jobs: &mut JoinSet<Vec<pb::LeasePack>>, pack: pb::LeasePack) {
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
        let (client, datasets, running, device, pack_size) = (
            self.client.clone(),
            self.datasets.clone(),
            self.running.clone(),
            self.device,
            self.pack,
        );
        let next = job::NextWork {
            identity: self.identity.clone(),
            shutdown: self.shutdown.clone(),
        };
        jobs.spawn(async move {
            let next = job::run_pack(leased, device, client, datasets, next, pack_size).await;
            let mut running = sync::lock(&running);
            for id in &lease_ids {
                running.remove(id);
            }
            next
        });
    }
}

/// Extends every held lease on each tick; stops the jobs whose leases came back stale; registers
/// again if the coordinator no longer knows this worker.
async fn heartbeats(
    mut client: WorkerServiceClient<Channel>,
    identity: Arc<Identity>,
    running: Running,
) {
    let mut tick = tokio::time::interval(identity.heartbeat_interval);
    loop {
        tick.tick().await;
        let lease_ids: Vec<String> = sync::lock(&running).keys().cloned().collect();
        let worker_id = identity.id();
        match client
            .heartbeat(pb::HeartbeatRequest {
                worker_id: worker_id.clone(),
                lease_ids,
            })
            .await
        {
            Ok(r) => {
                let held = sync::lock(&running);
                for stale in r.into_inner().stale_lease_ids {
                    if let Some(flag) = held.get(&stale) {
                        tracing::info!(lease = %stale, "lease no longer current; stopping its job");
                        flag.store(true, Ordering::SeqCst);
                    }
                }
            }
            Err(s) if s.code() == tonic::Code::NotFound => {
                if let Err(e) = identity.register_again(&worker_id).await {
                    tracing::warn!(error = %e, "registering again failed; the next heartbeat retries");
                }
            }
            Err(s) => {
                tracing::warn!(worker = %jetsweep_proto::worker_id::worker_name(&worker_id), status = %s.message(), "heartbeat failed")
            }
        }
    }
}
