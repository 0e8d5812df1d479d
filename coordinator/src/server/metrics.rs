//! `/metrics` for Prometheus: OpenMetrics when the scraper asks for it (`Accept`), the classic
//! text format 0.0.4 otherwise (what `promtool check metrics` and older scrapers read). Counts of
//! what the store holds (jobs by state, open jobs per sweep, leases granted, completions,
//! expiries, workers connected) are read from the store at each scrape, so they equal it and
//! survive restarts; request counts by RPC and code, and the store's commit latency, are measured
//! in this process; `process_*` (CPU, memory, file descriptors, start time, from `/proc`) and
//! `jetsweep_build_info` as every Prometheus client library exports them.

use std::collections::HashSet;
use std::sync::atomic::AtomicU64;
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
pub struct SweepStateLabels {
    pub sweep: String,
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

/// Most (sweep, state) series of open jobs a scrape carries: the sweeps with work left are few.
const MAX_SWEEP_SERIES: usize = 1000;

/// The store's commit time buckets (seconds): 0.1 ms to 3 s, each bound as written.
const COMMIT_BUCKETS: [f64; 10] = [0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0];

/// The standard `process_*` series (Prometheus' client libraries' names), from `/proc/self`.
#[derive(Clone, Default)]
struct ProcessMetrics {
    cpu_seconds: Counter<f64, AtomicU64>,
    resident_bytes: Gauge,
    virtual_bytes: Gauge,
    open_fds: Gauge,
    max_fds: Gauge,
    start_time_seconds: Gauge<f64, AtomicU64>,
}

impl ProcessMetrics {
    fn register(registry: &mut Registry) -> ProcessMetrics {
        let m = ProcessMetrics::default();
        registry.register(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            m.cpu_seconds.clone(),
        );
        registry.register(
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            m.resident_bytes.clone(),
        );
        registry.register(
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes",
            m.virtual_bytes.clone(),
        );
        registry.register(
            "process_open_fds",
            "Number of open file descriptors",
            m.open_fds.clone(),
        );
        registry.register(
            "process_max_fds",
            "Maximum number of open file descriptors",
            m.max_fds.clone(),
        );
        registry.register(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds",
            m.start_time_seconds.clone(),
        );
        m
    }

    /// Reads `/proc/self/stat`, `/proc/stat` and `/proc/self/fd`; what cannot be read stays.
    fn update(&self) {
        // SAFETY: sysconf and getrlimit read process-wide constants into a local.
        let (ticks, page) = unsafe {
            (
                libc::sysconf(libc::_SC_CLK_TCK).max(1) as f64,
                libc::sysconf(libc::_SC_PAGESIZE).max(1),
            )
        };
        if let Ok(stat) = std::fs::read_to_string("/proc/self/stat")
            && let Some((_, rest)) = stat.rsplit_once(')')
        {
            // Fields from the 3rd (state) on: utime 14th, stime 15th, starttime 22nd, vsize
            // 23rd, rss 24th (proc(5)).
            let f: Vec<&str> = rest.split_whitespace().collect();
            let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok());
            if let (Some(user), Some(system)) = (num(11), num(12)) {
                let total = (user + system) / ticks;
                let now = self.cpu_seconds.get();
                if total > now {
                    self.cpu_seconds.inc_by(total - now);
                }
            }
            if let Some(v) = num(20) {
                self.virtual_bytes.set(v as i64);
            }
            if let Some(pages) = num(21) {
                self.resident_bytes.set(pages as i64 * page);
            }
            if let (Some(start), Some(boot)) = (num(19), boot_time()) {
                self.start_time_seconds.set(boot + start / ticks);
            }
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            self.open_fds.set(fds.count() as i64);
        }
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes the limit into `limit`, a valid local.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
            self.max_fds.set(limit.rlim_cur.min(i64::MAX as u64) as i64);
        }
    }
}

/// The machine's boot time (Unix seconds), from `/proc/stat`.
fn boot_time() -> Option<f64> {
    std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
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
    sweep_open_jobs: Family<SweepStateLabels, Gauge>,
    process: ProcessMetrics,
    /// Serialises scrapes (each sets the store-derived values, then encodes).
    scrape: Arc<Mutex<()>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut root = Registry::default();
        let process = ProcessMetrics::register(&mut root);
        let registry = root.sub_registry_with_prefix("jetsweep");
        let build_info = Family::<BuildLabels, Gauge>::default();
        registry.register(
            "build_info",
            "The coordinator's version (the value is always 1)",
            build_info.clone(),
        );
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").into(),
            })
            .set(1);
        let sweep_open_jobs = Family::<SweepStateLabels, Gauge>::default();
        registry.register(
            "sweep_open_jobs",
            "Jobs of a sweep not ended yet, by state (queued, running, paused); sweeps with none are absent",
            sweep_open_jobs.clone(),
        );
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by RPC and status code",
            requests.clone(),
        );
        let commit_seconds = Histogram::new(COMMIT_BUCKETS);
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
            registry: Arc::new(root),
            sweep_open_jobs,
            process,
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
    /// (sweep, stored state, jobs) for open jobs.
    sweep_open: Vec<(String, String, i64)>,
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
    let sweep_open = tx
        .prepare_cached(
            "SELECT s.sweep_id, j.state, COUNT(*) FROM sweep_jobs s JOIN jobs j ON j.id = s.job_id
             WHERE j.state IN ('queued', 'leased', 'paused') GROUP BY 1, 2 ORDER BY 1, 2 LIMIT ?1",
        )?
        .query_map([MAX_SWEEP_SERIES as i64], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?
        .collect::<Result<_, _>>()?;
    Ok(StoreCounts {
        sweep_open,
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

    /// The exposition (OpenMetrics, or the text format 0.0.4 if not `openmetrics`), with the
    /// store-derived values set from `counts`.
    pub fn encode(&self, counts: StoreCounts, openmetrics: bool) -> String {
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
        self.sweep_open_jobs.clear();
        for (sweep, state, n) in counts.sweep_open {
            let state = state
                .parse::<JobStatus>()
                .map_or("unknown", |s| s.shown())
                .to_string();
            self.sweep_open_jobs
                .get_or_create(&SweepStateLabels { sweep, state })
                .set(n);
        }
        self.process.update();
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        if openmetrics { out } else { text_format(&out) }
    }
}

/// Prometheus' classic text format (0.0.4) from an OpenMetrics exposition: a counter family's
/// `# HELP`/`# TYPE` lines name its `_total` samples, and the OpenMetrics-only lines (`# UNIT`,
/// `# EOF`) go.
pub fn text_format(openmetrics: &str) -> String {
    let counters: HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_once(' '))
        .filter(|(_, kind)| *kind == "counter")
        .map(|(name, _)| name)
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match meta.and_then(|(p, rest)| rest.split_once(' ').map(|(n, tail)| (p, n, tail))) {
            Some((p, name, tail)) if counters.contains(name) => {
                out += &format!("{p}{name}_total {tail}\n");
            }
            _ => {
                out += line;
                out += "\n";
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_format_names_counters_by_their_samples_and_has_no_openmetrics_lines() {
        let om = "# HELP a_requests Requests.\n# TYPE a_requests counter\na_requests_total{code=\"0\"} 3\n# HELP a_jobs Jobs.\n# TYPE a_jobs gauge\na_jobs 2\n# UNIT a_x seconds\n# EOF\n";
        assert_eq!(
            text_format(om),
            "# HELP a_requests_total Requests.\n# TYPE a_requests_total counter\na_requests_total{code=\"0\"} 3\n# HELP a_jobs Jobs.\n# TYPE a_jobs gauge\na_jobs 2\n"
        );
    }

    #[test]
    fn a_scrape_has_help_on_every_family_clean_buckets_and_process_series() {
        let m = Metrics::default();
        m.commit(Duration::from_millis(2));
        let counts = StoreCounts {
            jobs: vec![("queued".into(), 2)],
            attempts: 1,
            done: 0,
            expired: 0,
            workers_connected: 1,
            sweep_open: vec![("lab-1".into(), "leased".into(), 3)],
        };
        let text = m.encode(counts, false);
        for family in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
            let name = family.split(' ').next().unwrap();
            assert!(
                text.contains(&format!("# HELP {name} ")),
                "{name} has no HELP:\n{text}"
            );
        }
        assert!(text.contains("le=\"0.0003\""), "{text}");
        assert!(!text.contains("00000000"), "float noise in:\n{text}");
        assert!(
            text.contains("jetsweep_sweep_open_jobs{sweep=\"lab-1\",state=\"running\"} 3"),
            "{text}"
        );
        assert!(text.contains("jetsweep_build_info{version="), "{text}");
        for series in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_start_time_seconds",
        ] {
            assert!(
                text.lines().any(|l| l.starts_with(series)),
                "{series} missing:\n{text}"
            );
        }
        assert!(!text.contains("# EOF"));
        assert!(
            m.encode(
                StoreCounts {
                    sweep_open: vec![],
                    jobs: vec![],
                    attempts: 1,
                    done: 0,
                    expired: 0,
                    workers_connected: 0
                },
                true
            )
            .ends_with("# EOF\n")
        );
    }
}
