//! The coordinator's shared state: the store's writer and reader, the clock, the caches of the
//! read side, and what the listeners are configured with. Both front ends — the gRPC services
//! (`grpc/`) and the dashboard (`web/`) — are glue over it; neither imports the other.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jetsweep_proto::limits::FORGET_AFTER;
use jetsweep_proto::sync;
use tonic::transport::{Identity, ServerTlsConfig};

use super::connections::{AddressLimiter, Over, Slot};
use super::sessions::Sessions;
use super::{activity_cache, metrics, results_cache};
use crate::Error;
use crate::access::DataAccess;
use crate::clock::{Millis, SharedClock};
use crate::credentials::{Caller, Credentials};
use crate::store::Store;
use crate::store::writer::Writer;

/// A prepared dataset no job needs is kept this long after it was last prepared or used, so that a
/// sweep being submitted (its dataset prepared, its jobs not yet stored) never loses it.
const DATASET_GRACE: Duration = Duration::from_secs(3600);

/// Shared state of a running coordinator.
#[derive(Clone)]
pub struct Coordinator {
    /// Every state change goes through the one writer, which commits concurrent requests together.
    pub(super) writer: Writer,
    /// A read-only connection for queries (status, results, watch): they never hold up the writer.
    pub(super) reader: Arc<Mutex<Store>>,
    /// Prepared datasets and the download cache live here.
    pub(super) data_dir: PathBuf,
    /// Who may call, and as what (everyone, as an admin, when there are none).
    pub(super) credentials: Arc<Credentials>,
    /// The dashboard's logins.
    pub(super) sessions: Arc<Sessions>,
    /// Where `now` comes from, for the writer and for reads that judge time (a worker gone).
    pub(super) clock: SharedClock,
    /// The certificate and key both services are served with; `None`: plaintext.
    pub(super) tls: Option<ServerTlsConfig>,
    /// Which dataset files a submitted sweep may name.
    pub(super) access: DataAccess,
    /// Submissions being parsed, expanded and stored at once: each holds its whole grid, so however
    /// many clients submit together, memory holds at most this many grids.
    pub(super) submissions: Arc<tokio::sync::Semaphore>,
    /// The results of the sweeps read last, aggregated once for all their pages.
    pub(super) results: Arc<results_cache::ResultsCache>,
    /// What the listed sweeps have cost and found, between the sweep list's polls.
    pub(super) activity: Arc<activity_cache::ActivityCache>,
    /// What `/metrics` reports.
    pub(super) metrics: metrics::Metrics,
    /// Live event streams open at once, in all and per client address (each reads the store
    /// after commits).
    pub(super) event_streams: Arc<AddressLimiter>,
    /// `WatchSweep` streams open at once, in all and per client address.
    pub(super) watch_streams: Arc<AddressLimiter>,
    /// Dataset downloads under way (each holds a few chunks in memory).
    pub(super) dataset_fetches: Arc<tokio::sync::Semaphore>,
    /// `/metrics` answers without credentials (`serve --metrics-public`).
    pub(super) metrics_public: bool,
}

/// Most dataset downloads at once: each buffers up to ~8 MB while its reader is slow, so memory
/// stays bounded however many workers start together (past it, UNAVAILABLE; workers retry).
pub const MAX_DATASET_FETCHES: usize = 32;

/// Most `WatchSweep` streams open at once: a progress bar each; past it, UNAVAILABLE.
pub const MAX_WATCH_STREAMS: usize = 256;

/// Most `WatchSweep` streams from one client address, so that one client cannot take them all.
pub const MAX_WATCH_STREAMS_PER_ADDRESS: usize = 32;

/// Most dashboard event streams open at once.
const MAX_EVENT_STREAMS: usize = 64;

/// Most dashboard event streams from one client address (a browser opens one per sweep page).
const MAX_EVENT_STREAMS_PER_ADDRESS: usize = 16;

/// How many submissions are worked on at once (see `Coordinator::submissions`).
const CONCURRENT_SUBMISSIONS: usize = 2;

impl Coordinator {
    /// A coordinator over the state file `store` (a file store: queries use a second connection),
    /// reading the time from `clock` (the system clock in service; a hand-moved one in tests).
    ///
    /// Leases that were running when the coordinator last stopped get one lease timeout from now
    /// before any expires: their workers could not heartbeat while it was away.
    pub fn new(mut store: Store, data_dir: PathBuf, clock: SharedClock) -> Result<Self, Error> {
        let extended = store.write(|tx| crate::jobs::extend_leases_after_start(tx, clock.now()))?;
        if extended > 0 {
            tracing::info!(
                leases = extended,
                "running leases given a lease timeout to report again after the start"
            );
        }
        let reader = store.open_reader()?;
        let metrics = metrics::Metrics::default();
        let commits = metrics.clone();
        Ok(Coordinator {
            writer: Writer::start_observed(store, clock.clone(), move |took| commits.commit(took))?,
            metrics,
            event_streams: AddressLimiter::new(MAX_EVENT_STREAMS, MAX_EVENT_STREAMS_PER_ADDRESS),
            watch_streams: AddressLimiter::new(MAX_WATCH_STREAMS, MAX_WATCH_STREAMS_PER_ADDRESS),
            dataset_fetches: Arc::new(tokio::sync::Semaphore::new(MAX_DATASET_FETCHES)),
            reader: Arc::new(Mutex::new(reader)),
            data_dir,
            credentials: Arc::new(Credentials::open()),
            sessions: Arc::default(),
            clock,
            tls: None,
            access: DataAccess::BuiltInOnly,
            submissions: Arc::new(tokio::sync::Semaphore::new(CONCURRENT_SUBMISSIONS)),
            results: Arc::default(),
            activity: Arc::default(),
            metrics_public: false,
        })
    }

    /// Serves `/metrics` without credentials, for a Prometheus that has none to send.
    pub fn with_public_metrics(mut self, public: bool) -> Self {
        self.metrics_public = public;
        self
    }

    /// Whether `/metrics` answers without credentials.
    pub(crate) fn metrics_public(&self) -> bool {
        self.metrics_public
    }

    /// Lets sweeps name dataset files as `access` allows (by default only the built-in sources).
    pub fn with_data_access(mut self, access: DataAccess) -> Self {
        self.access = access;
        self
    }

    /// Serves over TLS with this PEM certificate chain and private key. Errors: a certificate or
    /// key that rustls cannot use, said before anything listens.
    pub fn serve_tls(mut self, cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, Error> {
        let config = ServerTlsConfig::new()
            .identity(Identity::from_pem(cert_pem, key_pem))
            .timeout(super::connections::HANDSHAKE);
        tonic::transport::Server::builder()
            .tls_config(config.clone())
            .map_err(|e| Error::InvalidRequest(format!("TLS certificate or key: {e}")))?;
        self.tls = Some(config);
        Ok(self)
    }

    /// Requires one of `credentials` on every call but health checks.
    pub fn with_credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = Arc::new(credentials);
        self
    }

    /// Cancels `sweep_id` for `caller` (a user: only its own sweeps), recording who did it; with
    /// what the cancel stops now and what it leaves running for other sweeps.
    pub(crate) async fn cancel(
        &self,
        caller: Caller,
        sweep_id: String,
    ) -> Result<(crate::jobs::SweepCounts, (u32, u32)), Error> {
        let by = caller.name.clone();
        self.write(move |tx, now| {
            crate::jobs::audit::check_may_cancel(tx, &caller, &sweep_id)?;
            let counts = crate::jobs::cancel_sweep(tx, &sweep_id, now)?;
            let effect = crate::jobs::cancel_effect(tx, &sweep_id)?;
            let detail = format!("{} jobs cancelled", counts.cancelled);
            crate::jobs::audit::record(tx, now, &caller, "cancel", &sweep_id, &detail)?;
            Ok((counts, effect))
        })
        .await
        .inspect(|(counts, (stopping, kept))| {
            tracing::info!(sweep = %counts.id, by = %by, cancelled = counts.cancelled, stopping, kept, "sweep cancelled");
        })
    }

    /// Deletes `sweep_id` for `caller` ([`crate::jobs::delete_sweep`]), then its prepared dataset
    /// when no other sweep uses it; returns what went and the dataset file's bytes removed.
    pub(crate) async fn delete(
        &self,
        caller: Caller,
        sweep_id: String,
    ) -> Result<(crate::jobs::Deleted, u64), Error> {
        let by = caller.name.clone();
        let sweep = sweep_id.clone();
        let deleted = self
            .write(move |tx, now| crate::jobs::delete_sweep(tx, &caller, &sweep_id, now))
            .await?;
        let mut dataset_bytes = 0;
        if let Some(sha) = &deleted.unused_dataset {
            let path = crate::datasets::dataset_path(&self.data_dir, sha);
            if let Ok(meta) = std::fs::metadata(&path)
                && std::fs::remove_file(&path).is_ok()
            {
                dataset_bytes = meta.len();
            }
        }
        tracing::info!(sweep = %sweep, by = %by, jobs = deleted.jobs, shared = deleted.shared, epochs = deleted.epochs,
            models = deleted.models, freed_bytes = deleted.freed_bytes, dataset_bytes, "sweep deleted");
        Ok((deleted, dataset_bytes))
    }

    /// Forgets what the worker named `worker` produced ([`crate::jobs::invalidate_worker`]), with
    /// an audit row for each sweep that holds a requeued job (one without a sweep when none does).
    pub(crate) async fn invalidate_worker(
        &self,
        caller: Caller,
        worker: String,
    ) -> Result<crate::jobs::Invalidated, Error> {
        let by = caller.name.clone();
        let named = worker.clone();
        self.write(move |tx, now| {
            let done = crate::jobs::invalidate_worker(tx, &worker, now)?;
            let detail = format!(
                "worker {worker}: {} attempts invalidated, {} epochs deleted, {} jobs queued again",
                done.attempts, done.epochs, done.requeued
            );
            if done.sweeps.is_empty() {
                crate::jobs::audit::record(tx, now, &caller, "invalidate", "", &detail)?;
            }
            for sweep in &done.sweeps {
                crate::jobs::audit::record(tx, now, &caller, "invalidate", sweep, &detail)?;
            }
            Ok(done)
        })
        .await
        .inspect(|done| {
            tracing::warn!(worker = %named, by = %by, attempts = done.attempts, epochs = done.epochs,
                requeued = done.requeued, sweeps = done.sweeps.len(), "a worker's results invalidated");
        })
    }

    /// The standard scaler of the dataset `sha256` that the sweep file `spec_toml` names: from
    /// the prepared file, or, once that was cleaned up, from preparing it again (it must hash the
    /// same).
    pub(crate) async fn scaler_of(
        &self,
        spec_toml: &str,
        sha256: &str,
    ) -> Result<(Vec<f32>, Vec<f32>), Error> {
        let path = crate::datasets::dataset_path(&self.data_dir, sha256);
        let spec = crate::sweep::SweepSpec::parse_with(spec_toml, &self.access);
        let (data_dir, sha256) = (self.data_dir.clone(), sha256.to_string());
        tokio::task::spawn_blocking(move || {
            let provenance = match jetsweep_data::cache::load(&path) {
                Ok(p) => p.provenance,
                Err(_) => {
                    let spec = spec?;
                    let again =
                        crate::datasets::prepare(&data_dir, &spec.dataset, spec.val_fraction)?;
                    if again.sha256 != sha256 {
                        return Err(Error::NotFound(format!(
                            "dataset {sha256}: preparing the sweep's dataset again gives {}; its scaling statistics are gone",
                            again.sha256
                        )));
                    }
                    jetsweep_data::cache::load(&path)?.provenance
                }
            };
            Ok((provenance.scaler_mean, provenance.scaler_std))
        })
        .await
        .map_err(|e| Error::Unavailable(format!("dataset task failed: {e}")))?
    }

    /// Runs `f` in the writer's next group commit; returns once it is committed. `f` may run twice
    /// (see [`crate::store::writer`]): it must be a pure function of the store and its arguments.
    pub(crate) async fn write<T: Send + 'static>(
        &self,
        f: impl Fn(&rusqlite::Transaction<'_>, Millis) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        self.writer.write(f).await
    }

    /// Runs `f` over a read snapshot on a blocking thread.
    pub(crate) async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let store = self.reader.clone();
        tokio::task::spawn_blocking(move || {
            let mut store = sync::lock(&store);
            store.read(f)
        })
        .await
        .map_err(|e| Error::Unavailable(format!("store task failed: {e}")))?
    }

    /// Returns overdue leases' jobs to the queue now (the server also does it every
    /// [`EXPIRY_SCAN`], and before every lease grant). Returns how many expired.
    pub async fn expire_leases(&self) -> Result<usize, Error> {
        self.write(crate::jobs::expire_leases).await
    }

    /// Hands every lease back (see [`crate::jobs::release_all`]); returns how many.
    pub async fn release_all_leases(&self, why: &'static str) -> Result<usize, Error> {
        self.write(move |tx, now| crate::jobs::release_all(tx, why, now))
            .await
    }

    /// The minute's chores: forgets gone workers and removes unused datasets. Failures are logged;
    /// the next minute retries.
    pub async fn housekeeping(&self) {
        match self.forget_workers().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(workers = n, "forgot workers gone for an hour"),
            Err(e) => {
                tracing::warn!(error = %e, "forgetting gone workers failed; the next scan retries")
            }
        }
        if let Err(e) = self.remove_unused_datasets().await {
            tracing::warn!(error = %e, "removing unused datasets failed; the next scan retries");
        }
    }

    /// Whether the state file answers a read: what `/healthz` and the gRPC health service report.
    pub(crate) async fn check_store(&self) -> Result<(), Error> {
        self.read(|tx| {
            tx.query_row("SELECT COUNT(*) FROM sweeps", [], |r| r.get::<_, i64>(0))?;
            Ok(())
        })
        .await
    }

    /// Who may call: the credentials the gate ([`super::gate`]) checks every request against.
    pub(crate) fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// The dashboard's login sessions.
    pub(crate) fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    /// Changes after every commit of the store (for watchers of a sweep).
    pub(crate) fn commits(&self) -> tokio::sync::watch::Receiver<u64> {
        self.writer.commits()
    }

    /// Room for one more dataset download, if there is any.
    pub(crate) fn dataset_fetch_permit(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.dataset_fetches.clone().try_acquire_owned().ok()
    }

    /// Room for one more `WatchSweep` stream from `client`, if the limits leave any.
    pub(crate) fn watch_stream_slot(&self, client: Option<IpAddr>) -> Result<Slot, Over> {
        self.watch_streams.take(client)
    }

    /// Room for one more live event stream (the dashboard's) from `client`, if the limits leave
    /// any.
    pub(crate) fn event_stream_slot(&self, client: Option<IpAddr>) -> Result<Slot, Over> {
        self.event_streams.take(client)
    }

    /// What `/metrics` reports.
    pub(crate) fn metrics(&self) -> &metrics::Metrics {
        &self.metrics
    }

    /// Whether it serves TLS (cookies are then marked Secure).
    pub(crate) fn serves_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The coordinator's time now.
    pub(crate) fn now(&self) -> Millis {
        self.clock.now()
    }

    /// The sweep's results as of now, with its count of ended jobs (done, failed, cancelled):
    /// from the cache while that count stands, else read and aggregated (the slow part, on a
    /// blocking thread) and kept.
    pub(crate) async fn aggregate_results(
        &self,
        id: &str,
    ) -> Result<(u32, Arc<results_cache::Aggregated>), Error> {
        let counts = {
            let id = id.to_string();
            self.read(move |tx| crate::jobs::sweep_counts(tx, &id))
                .await?
        };
        let ended = counts.done + counts.failed + counts.cancelled;
        if let Some(kept) = self.results.get(id, ended) {
            return Ok((ended, kept));
        }
        let read_id = id.to_string();
        let aggregate = self
            .read(move |tx| {
                Ok(crate::results::aggregate(&crate::jobs::sweep_outcomes(
                    tx, &read_id,
                )?))
            })
            .await?;
        let aggregated = Arc::new((aggregate, counts.dataset));
        self.results.put(id, ended, aggregated.clone());
        Ok((ended, aggregated))
    }

    /// The sweep's [`crate::jobs::SweepActivity`] at `now`, given its counts (read in the same
    /// transaction): kept between calls while its ended and running counts stand.
    pub(crate) fn sweep_activity(
        &self,
        tx: &rusqlite::Transaction<'_>,
        counts: &crate::jobs::SweepCounts,
        now: Millis,
    ) -> Result<crate::jobs::SweepActivity, Error> {
        let key = (
            counts.done + counts.failed + counts.cancelled,
            counts.leased,
        );
        if let Some(kept) = self.activity.get(&counts.id, key, now) {
            return Ok(kept);
        }
        let activity = crate::jobs::sweep_activity(tx, &counts.id, now)?;
        self.activity.put(&counts.id, key, now, activity.clone());
        Ok(activity)
    }

    /// Removes prepared datasets no queued or running job needs and none used for
    /// [`DATASET_GRACE`] (see [`crate::datasets::remove_unused`]). Returns how many.
    pub async fn remove_unused_datasets(&self) -> Result<usize, Error> {
        let needed = self.read(crate::jobs::datasets_in_use).await?;
        let data_dir = self.data_dir.clone();
        let now = std::time::UNIX_EPOCH + Duration::from_millis(self.clock.now().max(0) as u64);
        let unused_since = now - DATASET_GRACE;
        let removed = tokio::task::spawn_blocking(move || {
            crate::datasets::remove_unused(&data_dir, &needed, unused_since)
        })
        .await
        .map_err(|e| Error::Unavailable(format!("dataset clean-up task: {e}")))?
        .map_err(|e| Error::Unavailable(format!("dataset clean-up: {e}")))?;
        for sha256 in &removed {
            tracing::info!(dataset = %sha256, "prepared dataset removed: no queued or running job needs it (a sweep naming it prepares it again)");
        }
        Ok(removed.len())
    }

    /// Drops workers gone longer than [`FORGET_AFTER`] that hold no lease. Returns how many.
    pub async fn forget_workers(&self) -> Result<usize, Error> {
        self.write(|tx, now| crate::jobs::forget_workers(tx, now - FORGET_AFTER.as_millis() as i64))
            .await
    }
}
