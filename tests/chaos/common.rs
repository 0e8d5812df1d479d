//! What the scenarios share: sizes, outcomes, processes, polling, and reading the state file.

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use jetsweep_proto::v1 as pb;
pub use jetsweep_tests::cluster::*;

/// How big a run: the short form for CI, or the sizes the checks name.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Size {
    Short,
    Full,
}

/// A scenario's verdict: its one summary line, or why it failed or could not run here.
pub enum Outcome {
    Passed(String),
    Failed(String),
    Skipped(String),
}

/// A failed check, as the scenario's outcome.
pub type Checked<T> = Result<T, String>;

impl From<Checked<String>> for Outcome {
    fn from(r: Checked<String>) -> Self {
        match r {
            Ok(summary) => Outcome::Passed(summary),
            Err(why) => Outcome::Failed(why),
        }
    }
}

/// Fails with `what` unless `ok`.
pub fn check(ok: bool, what: impl FnOnce() -> String) -> Checked<()> {
    if ok { Ok(()) } else { Err(what()) }
}

/// The binaries are the ones beside this program (the build's `target/release`), unless
/// `$JETSWEEP_BIN_DIR` names others.
pub fn use_binaries_beside_this_program() {
    if std::env::var_os(jetsweep_tests::bins::BIN_DIR).is_some() {
        return;
    }
    let exe = std::env::current_exe().expect("this program's path");
    let dir = exe.parent().expect("a folder");
    // SAFETY: set once at start-up, before the runtime or any other thread exists.
    unsafe { std::env::set_var(jetsweep_tests::bins::BIN_DIR, dir) };
}

/// Polls `probe` every 100 ms until it gives `Some`, for at most `limit`.
pub async fn poll<T, F, Fut>(limit: Duration, what: &str, mut probe: F) -> Checked<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = probe().await {
            return Ok(v);
        }
        if start.elapsed() > limit {
            return Err(format!("timed out after {limit:?} waiting for {what}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The sweep's view, if the coordinator answers.
pub async fn try_sweep(url: &str, id: &str) -> Option<pb::SweepView> {
    let mut c = jetsweep_coordinator::client::SweepClient::connect(url, None, None)
        .await
        .ok()?;
    c.sweep(id).await.ok()
}

/// Waits until every job of the sweep has ended (done, failed or cancelled).
pub async fn until_finished(url: &str, id: &str, limit: Duration) -> Checked<pb::SweepView> {
    poll(limit, "the sweep to finish", || async {
        try_sweep(url, id)
            .await
            .filter(|s| s.done + s.failed + s.cancelled == s.total)
    })
    .await
}

/// A port on 127.0.0.1 free a moment ago, for a coordinator that must come back on the same one.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// What the state file says happened to every attempt, read with SQLite (the coordinator may be
/// running: the file is in WAL mode and readers do not block it).
#[derive(Debug, Default)]
pub struct Ledger {
    pub done: u32,
    pub failed: u32,
    /// Attempts by outcome.
    pub attempts_done: u32,
    pub attempts_expired: u32,
    /// Jobs with more than one completed attempt (a duplicated trial).
    pub duplicated: u32,
    /// Jobs that needed more than one attempt.
    pub retried: u32,
}

pub fn ledger(state: &Path) -> Checked<Ledger> {
    let read = || -> rusqlite::Result<Ledger> {
        let db = rusqlite::Connection::open_with_flags(
            state,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )?;
        let count = |sql: &str| db.query_row(sql, [], |r| r.get::<_, u32>(0));
        Ok(Ledger {
            done: count("SELECT COUNT(*) FROM jobs WHERE state = 'done'")?,
            failed: count("SELECT COUNT(*) FROM jobs WHERE state = 'failed'")?,
            attempts_done: count("SELECT COUNT(*) FROM attempts WHERE outcome = 'done'")?,
            attempts_expired: count("SELECT COUNT(*) FROM attempts WHERE outcome = 'expired'")?,
            duplicated: count(
                "SELECT COUNT(*) FROM (SELECT job_id FROM attempts WHERE outcome = 'done' GROUP BY job_id HAVING COUNT(*) > 1)",
            )?,
            retried: count("SELECT COUNT(*) FROM jobs WHERE attempts > 1")?,
        })
    };
    read().map_err(|e| format!("reading {}: {e}", state.display()))
}

pub use jetsweep_tests::cluster::signal;

/// A small xorshift generator, so a run's kill schedule can be told by its seed.
pub struct Dice(u64);

impl Dice {
    pub fn new(seed: u64) -> Self {
        Dice(seed | 1)
    }
    /// A number in `lo..hi`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        lo + self.0 % (hi - lo)
    }
}

/// The last `n` lines of a process's log, for a failure message.
pub fn log_tail(log: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
