//! The store's one writer: a thread that owns the write connection and commits requests in groups.
//!
//! Every state-changing request becomes an [`Op`] on a channel. The writer takes every op waiting
//! (up to [`MAX_GROUP`]), runs them in one transaction, commits once, and only then answers each
//! request. Under load a hundred workers' reports cost one commit (one WAL append and fsync) instead
//! of a hundred, and no request is answered before it is durable: persist, then acknowledge.
//!
//! A failing op must not undo the others. Ops rarely fail (a stale lease, an unknown worker), so the
//! group first runs straight through; if any op fails, the group is rolled back and run again with
//! each op in a savepoint of its own, so the failed one is undone alone. (Savepoints on every op
//! cost a sixth of the writer's time.) After each commit the writer bumps a counter that
//! `WatchSweep` streams wait on.
//!
//! Checkpoints copy the WAL into the main file. The bulk of that copying (and its fsync) runs on a
//! thread of its own with its own connection, so commits do not wait behind it. But a checkpoint
//! that runs beside a busy writer never catches up with it, and SQLite only starts the WAL afresh
//! once every frame is copied: the WAL grew by 250 MB in 20,000 jobs. So the writer, between
//! groups, now and then copies the few frames the checkpointer has not reached; its next commit
//! then starts the WAL from the beginning.

use std::thread;
use std::time::{Duration, Instant};

use rusqlite::Transaction;
use tokio::sync::{mpsc, oneshot, watch};

use super::Store;
use crate::Error;
use crate::clock::{Millis, SharedClock};

/// Most ops committed together: bounds how long the first op of a group waits for the last.
const MAX_GROUP: usize = 256;
/// How often the checkpointer copies new commits into the main file: often, so that what is left
/// for the writer's catch-up is small (under 4 MB at 10,000 jobs/s).
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(100);
/// How often the writer catches up with the checkpointer, letting the WAL start afresh. The WAL
/// holds at most about this much time of commits (20 MB at 10,000 jobs/s).
const CATCH_UP_INTERVAL: Duration = Duration::from_millis(500);

/// One request's work, run by the writer thread.
trait Op: Send {
    /// Runs the request's domain function inside the group's transaction (in a savepoint of its
    /// own when `isolated`, so that a failure undoes its changes alone). True when it succeeded.
    fn run(&mut self, tx: &Transaction<'_>, now: Millis, isolated: bool) -> bool;
    /// Answers the request once the group's commit is known (`Err` when it did not commit).
    fn answer(self: Box<Self>, committed: Result<(), &Error>);
}

/// A domain function and the channel its caller waits on.
struct Write<T, F> {
    /// Run once, or twice when another op of its group failed on the first pass.
    f: F,
    outcome: Option<Result<T, Error>>,
    reply: oneshot::Sender<Result<T, Error>>,
}

impl<T, F> Op for Write<T, F>
where
    T: Send,
    F: Fn(&Transaction<'_>, Millis) -> Result<T, Error> + Send,
{
    fn run(&mut self, tx: &Transaction<'_>, now: Millis, isolated: bool) -> bool {
        let f = &self.f;
        let outcome = if isolated {
            in_savepoint(tx, |tx| f(tx, now))
        } else {
            catch_panic(|| f(tx, now))
        };
        let ok = outcome.is_ok();
        self.outcome = Some(outcome);
        ok
    }

    fn answer(self: Box<Self>, committed: Result<(), &Error>) {
        let answer = match committed {
            Ok(()) => self
                .outcome
                .unwrap_or_else(|| Err(Error::Unavailable("the request never ran".into()))),
            Err(e) => Err(Error::Unavailable(format!(
                "the state file did not commit: {e}"
            ))),
        };
        // The caller may have gone (client disconnected); its change is committed all the same.
        let _ = self.reply.send(answer);
    }
}

/// Runs `f` so that its changes are undone if it fails, without touching the rest of the group.
fn in_savepoint<T>(
    tx: &Transaction<'_>,
    f: impl FnOnce(&Transaction<'_>) -> Result<T, Error>,
) -> Result<T, Error> {
    tx.prepare_cached("SAVEPOINT op")?.execute([])?;
    match catch_panic(|| f(tx)) {
        Ok(v) => {
            tx.prepare_cached("RELEASE op")?.execute([])?;
            Ok(v)
        }
        Err(e) => {
            tx.prepare_cached("ROLLBACK TO op")?.execute([])?;
            tx.prepare_cached("RELEASE op")?.execute([])?;
            Err(e)
        }
    }
}

/// A bug that panics fails its own request, not the writer thread every request depends on.
fn catch_panic<T>(f: impl FnOnce() -> Result<T, Error>) -> Result<T, Error> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("unknown panic");
        Err(Error::Unavailable(format!("internal error: {what}")))
    })
}

/// Sends work to the writer thread. Cloning is cheap; the thread stops when every handle is gone.
#[derive(Clone)]
pub struct Writer {
    ops: mpsc::UnboundedSender<Box<dyn Op>>,
    /// How many groups have committed; changes after every commit.
    commits: watch::Receiver<u64>,
}

impl Writer {
    /// Starts the writer thread over `store`, and the checkpointer over a second connection to
    /// the same file.
    pub fn start(store: Store, clock: SharedClock) -> Result<Writer, Error> {
        Self::start_observed(store, clock, |_| {})
    }

    /// [`Writer::start`], calling `observe` with how long each group took to run and commit.
    pub fn start_observed(
        store: Store,
        clock: SharedClock,
        observe: impl Fn(Duration) + Send + 'static,
    ) -> Result<Writer, Error> {
        let checkpoints = store.open_reader()?;
        store.leave_checkpoints_to_others()?;
        let (ops, rx) = mpsc::unbounded_channel();
        let (committed, commits) = watch::channel(0);
        thread::Builder::new()
            .name("jetsweep-writer".into())
            .spawn(move || write_groups(store, clock, rx, committed, observe))
            .expect("spawn the store writer thread");
        let seen = commits.clone();
        thread::Builder::new()
            .name("jetsweep-checkpoint".into())
            .spawn(move || checkpoint_while_writing(checkpoints, seen))
            .expect("spawn the store checkpoint thread");
        Ok(Writer { ops, commits })
    }

    /// A receiver that sees a change after every commit (the store may have changed).
    pub fn commits(&self) -> watch::Receiver<u64> {
        self.commits.clone()
    }

    /// Runs `f` in the next group; returns its value once the group has committed.
    pub async fn write<T: Send + 'static>(
        &self,
        f: impl Fn(&Transaction<'_>, Millis) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let (reply, answer) = oneshot::channel();
        let op = Write {
            f,
            outcome: None,
            reply,
        };
        self.ops
            .send(Box::new(op))
            .map_err(|_| Error::Unavailable("the store writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| Error::Unavailable("the store writer has stopped".into()))?
    }
}

/// The checkpointer thread: after new commits, checkpoints; stops when the writer has stopped.
fn checkpoint_while_writing(store: Store, mut commits: watch::Receiver<u64>) {
    loop {
        thread::sleep(CHECKPOINT_INTERVAL);
        match commits.has_changed() {
            Err(_) => break,
            Ok(false) => continue,
            Ok(true) => {
                commits.borrow_and_update();
                if let Err(e) = store.checkpoint() {
                    // Not fatal: the WAL keeps every commit; the next pass tries again.
                    tracing::warn!(error = %e, "checkpoint failed; the WAL keeps every commit and the next pass retries");
                }
            }
        }
    }
    // A last full copy, so the state file stands alone once the coordinator has stopped.
    let _ = store.checkpoint();
}

/// The writer thread: waits for an op, takes every other op already waiting, commits them as one.
fn write_groups(
    mut store: Store,
    clock: SharedClock,
    mut rx: mpsc::UnboundedReceiver<Box<dyn Op>>,
    committed: watch::Sender<u64>,
    observe: impl Fn(Duration),
) {
    let mut group: Vec<Box<dyn Op>> = Vec::with_capacity(MAX_GROUP);
    let mut caught_up = Instant::now();
    while let Some(first) = rx.blocking_recv() {
        group.push(first);
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(op) => group.push(op),
                Err(_) => break,
            }
        }
        let started = Instant::now();
        let outcome = commit_group(&mut store, &mut group, clock.now());
        observe(started.elapsed());
        for op in group.drain(..) {
            op.answer(outcome.as_ref().map(|_| ()));
        }
        if outcome.is_ok() {
            committed.send_modify(|n| *n += 1);
        }
        if caught_up.elapsed() >= CATCH_UP_INTERVAL {
            caught_up = Instant::now();
            // Busy (the checkpointer is mid-pass) or failed: the next interval tries again.
            let _ = store.checkpoint();
        }
    }
}

/// Runs a group straight through and commits it; if an op failed, rolls back and runs the group
/// again with each op isolated in a savepoint.
fn commit_group(store: &mut Store, group: &mut [Box<dyn Op>], now: Millis) -> Result<(), Error> {
    let tx = store.begin()?;
    if group.iter_mut().all(|op| op.run(&tx, now, false)) {
        return Ok(tx.commit()?);
    }
    tx.rollback()?;
    let tx = store.begin()?;
    for op in group.iter_mut() {
        op.run(&tx, now, true);
    }
    Ok(tx.commit()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Many concurrent requests, one of which fails half-way and one of which panics: the others'
    /// changes are committed and visible to a fresh connection, the failing ones' are not.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_op_is_undone_alone_and_the_rest_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let writer = Writer::start(Store::open(&path).unwrap(), crate::clock::system()).unwrap();
        let insert = |tx: &Transaction<'_>, host: &str| {
            tx.execute(
                "INSERT INTO workers (id, host, device, slots, registered_ms, last_seen_ms) VALUES (?1, ?1, 'cpu', 1, 0, 0)",
                [host],
            )
        };
        let mut tasks = Vec::new();
        for i in 0..50 {
            let writer = writer.clone();
            tasks.push(tokio::spawn(async move {
                writer
                    .write(move |tx, _| {
                        insert(tx, &format!("w{i}"))?;
                        match i {
                            13 => Err(Error::NotFound("thirteen".into())),
                            27 => panic!("twenty-seven"),
                            _ => Ok(i),
                        }
                    })
                    .await
            }));
        }
        for (i, t) in tasks.into_iter().enumerate() {
            match (i, t.await.unwrap()) {
                (13, Err(Error::NotFound(_))) => {}
                (27, Err(Error::Unavailable(why))) => assert!(why.contains("twenty-seven")),
                (_, Ok(v)) => assert_eq!(v, i),
                (i, other) => panic!("op {i}: {other:?}"),
            }
        }
        let conn = rusqlite::Connection::open(&path).unwrap();
        let hosts: Vec<String> = conn
            .prepare("SELECT host FROM workers")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(hosts.len(), 48);
        assert!(!hosts.contains(&"w13".to_string()) && !hosts.contains(&"w27".to_string()));
    }
}
