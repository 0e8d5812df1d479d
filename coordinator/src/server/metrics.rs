//! `/metrics` in Prometheus' text format. Counts of what the store holds (jobs by state, leases
//! granted, completions, expiries, workers connected) are read from the store at each scrape, so
//! they equal it and survive restarts; request counts by RPC and code, and the store's commit
//! latency, are measured in this process.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use rusqlite::Transaction;

use crate::Error;
use crate::clock::Millis;
use jetsweep_proto::state::JobStatus;
use jetsweep_proto::sync;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `Service/Method` for the gRPC services, `http` for the dashboard and probes.
    pub rpc: String,
    /// The gRPC status code's number (0 OK), or the HTTP status for `http`.
    pub code: String,
}

/// The coordinator's metrics; cheap to clone (shared handles).
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    requests: Family<RequestLabels, Counter>,
    commit_seconds: Histogram,
    jobs: Family<StateLabel, Gauge>,
    leases_granted: Counter,
    completions: Counter,
    expiries: Counter,
    workers_connected: Gauge,
    connections_open: Gauge,
    connections_refused: Counter,
    /// Serialises scrapes (each sets the store-derived values, then encodes).
    scrape: Arc<Mutex<()>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("jetsweep");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by RPC and status code",
            requests.clone(),
        );
        // 0.1 ms to ~3 s.
        let commit_seconds = Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(1e-4, 3.0, 10),
        );
        registry.register(
            "store_commit_seconds",
            "Time to run and commit one group of store writes",
            commit_seconds.clone(),
        );
        let jobs = Family::<StateLabel, Gauge>::default();
        registry.register("jobs", "Jobs in the store, by state", jobs.clone());
        let leases_granted = Counter::default();
        registry.register(
            "leases_granted",
            "Leases ever granted (attempts started)",
            leases_granted.clone(),
        );
        let completions = Counter::default();
        registry.register(
            "completions",
            "Attempts that completed their job",
            completions.clone(),
        );
        let expiries = Counter::default();
        registry.register(
            "lease_expiries",
            "Leases that expired (a worker stopped reporting)",
            expiries.clone(),
        );
        let workers_connected = Gauge::default();
        registry.register(
            "workers_connected",
            "Workers heard from within the last 10 heartbeats",
            workers_connected.clone(),
        );
        let connections_open = Gauge::default();
        registry.register(
            "connections_open",
            "Client connections open now (gRPC and dashboard)",
            connections_open.clone(),
        );
        let connections_refused = Counter::default();
        registry.register(
            "connections_refused",
            "Connections closed on arrival: over the total or per-address limit",
            connections_refused.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            connections_open,
            connections_refused,
            requests,
            commit_seconds,
            jobs,
            leases_granted,
            completions,
            expiries,
            workers_connected,
            scrape: Arc::default(),
        }
    }
}

/// What the store says at a scrape.
pub struct StoreCounts {
    jobs: Vec<(String, i64)>,
    attempts: u64,
    done: u64,
    expired: u64,
    workers_connected: i64,
}

/// Reads the store-derived values (one read transaction).
pub fn store_counts(tx: &Transaction<'_>, connected_since: Millis) -> Result<StoreCounts, Error> {
    let jobs = tx
        .prepare_cached("SELECT state, COUNT(*) FROM jobs GROUP BY state")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let (attempts, done, expired): (i64, Option<i64>, Option<i64>) = tx.query_row(
        "SELECT COUNT(*), SUM(outcome = 'done'), SUM(outcome = 'expired') FROM attempts",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let workers_connected = tx.query_row(
        "SELECT COUNT(*) FROM workers WHERE last_seen_ms >= ?1",
        [connected_since],
        |r| r.get(0),
    )?;
    Ok(StoreCounts {
        jobs,
        attempts: attempts as u64,
        done: done.unwrap_or(0) as u64,
        expired: expired.unwrap_or(0) as u64,
        workers_connected,
    })
}

/// Raises `counter` to `total` (store totals only grow; a smaller one, from another state file,
/// leaves it).
fn raise(counter: &Counter, total: u64) {
    let now = counter.get();
    if total > now {
        counter.inc_by(total - now);
    }
}

impl Metrics {
    /// Counts one answered request.
    pub fn request(&self, rpc: String, code: String) {
        self.requests
            .get_or_create(&RequestLabels { rpc, code })
            .inc();
    }

    /// Records one store commit's duration.
    pub(crate) fn connection_opened(&self) {
        self.connections_open.inc();
    }

    pub(crate) fn connection_closed(&self) {
        self.connections_open.dec();
    }

    pub(crate) fn connection_refused(&self) {
        self.connections_refused.inc();
    }

    /// Connections open now.
    pub fn connections_open(&self) -> i64 {
        self.connections_open.get()
    }

    /// Connections refused so far.
    pub fn connections_refused(&self) -> u64 {
        self.connections_refused.get()
    }

    pub fn commit(&self, took: Duration) {
        self.commit_seconds.observe(took.as_secs_f64());
    }

    /// The text exposition, with the store-derived values set from `counts`.
    pub fn encode(&self, counts: StoreCounts) -> String {
        let _one = sync::lock(&self.scrape);
        for status in JobStatus::ALL {
            let n = counts
                .jobs
                .iter()
                .find(|(s, _)| s == status.as_str())
                .map_or(0, |(_, n)| *n);
            self.jobs
                .get_or_create(&StateLabel {
                    state: status.shown().into(),
                })
                .set(n);
        }
        raise(&self.leases_granted, counts.attempts);
        raise(&self.completions, counts.done);
        raise(&self.expiries, counts.expired);
        self.workers_connected.set(counts.workers_connected);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}
