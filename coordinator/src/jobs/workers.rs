//! The worker registry: who registered, when each was last heard from, what each holds.

use rusqlite::{OptionalExtension, Transaction, params};

use super::Millis;
use crate::Error;
use crate::store::{exec, one};
use jetsweep_proto::limits::GONE_AFTER;

/// A registered worker.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerRecord {
    pub id: String,
    pub host: String,
    pub device: String,
    pub slots: u32,
    pub last_seen_ms: Millis,
    /// When it said goodbye (a heartbeat with `leaving`), if it did.
    pub left_ms: Option<Millis>,
}

/// Whether a worker is still with us, as lists show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    Alive,
    /// Said goodbye: it exited cleanly.
    Left,
    /// Silent for longer than [`GONE_AFTER`] without a goodbye: crashed, killed or cut off.
    Gone,
}

impl WorkerRecord {
    /// Alive, left or gone at `now`. A goodbye counts while it is the last word heard.
    pub fn presence(&self, now: Millis) -> Presence {
        if self.left_ms.is_some_and(|left| left >= self.last_seen_ms) {
            Presence::Left
        } else if self.last_seen_ms < now - GONE_AFTER.as_millis() as Millis {
            Presence::Gone
        } else {
            Presence::Alive
        }
    }
}

/// Records a worker; returns its id, `NAME.SECRET` (see [`jetsweep_proto::worker_id`]): NAME is its
/// host, cleaned, and a number never given before; SECRET is 128 random bits.
pub fn register_worker(
    tx: &Transaction<'_>,
    host: &str,
    device: &str,
    slots: u32,
    now: Millis,
) -> Result<String, Error> {
    let n: i64 = one(
        tx,
        "INSERT INTO counters (name, value) VALUES ('workers', 1)
         ON CONFLICT (name) DO UPDATE SET value = value + 1 RETURNING value",
        [],
        |r| r.get(0),
    )?;
    let mut secret = [0u8; 16];
    getrandom::getrandom(&mut secret)
        .map_err(|e| Error::Unavailable(format!("no randomness for a worker id: {e}")))?;
    let id = format!(
        "{}-{n}.{}",
        host.chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect::<String>(),
        secret
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    exec(
        tx,
        "INSERT INTO workers (id, host, device, slots, registered_ms, last_seen_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
        params![id, host, device, slots, now],
    )?;
    Ok(id)
}

/// Notes that `worker` was heard from. Errors: NotFound (it must register again).
pub(super) fn touch_worker(tx: &Transaction<'_>, worker: &str, now: Millis) -> Result<(), Error> {
    let n = exec(
        tx,
        "UPDATE workers SET last_seen_ms = ?2 WHERE id = ?1",
        params![worker, now],
    )?;
    if n == 0 {
        return Err(unknown_worker(worker));
    }
    Ok(())
}

/// A worker the registry does not hold (never registered, or forgotten): it registers again.
fn unknown_worker(worker: &str) -> Error {
    Error::NotFound(format!(
        "worker {:?} (register again)",
        jetsweep_proto::worker_id::worker_name(worker)
    ))
}

/// The device `worker` registered with. Errors: NotFound.
pub(super) fn worker_device(tx: &Transaction<'_>, worker: &str) -> Result<String, Error> {
    tx.prepare_cached("SELECT device FROM workers WHERE id = ?1")?
        .query_row([worker], |r| r.get(0))
        .optional()?
        .ok_or_else(|| unknown_worker(worker))
}

/// Drops the workers last heard from before `seen_before` that hold no lease (a worker that
/// comes back registers again). Returns how many.
pub fn forget_workers(tx: &Transaction<'_>, seen_before: Millis) -> Result<usize, Error> {
    Ok(exec(
        tx,
        "DELETE FROM workers WHERE last_seen_ms < ?1
             AND NOT EXISTS (SELECT 1 FROM jobs WHERE state = 'leased' AND jobs.worker_id = workers.id)",
        [seen_before],
    )?)
}

/// Workers, most recently seen first, with the leases each holds.
pub fn list_workers(tx: &Transaction<'_>) -> Result<Vec<(WorkerRecord, Vec<String>)>, Error> {
    let workers: Vec<WorkerRecord> = tx
        .prepare(
            "SELECT id, host, device, slots, last_seen_ms, left_ms FROM workers ORDER BY last_seen_ms DESC",
        )?
        .query_map([], |r| {
            Ok(WorkerRecord {
                id: r.get(0)?,
                host: r.get(1)?,
                device: r.get(2)?,
                slots: r.get(3)?,
                last_seen_ms: r.get(4)?,
                left_ms: r.get(5)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    let mut held =
        tx.prepare_cached("SELECT id FROM jobs WHERE state = 'leased' AND worker_id = ?1")?;
    workers
        .into_iter()
        .map(|w| {
            let jobs = held
                .query_map([&w.id], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            Ok((w, jobs))
        })
        .collect()
}

/// Jobs each worker finished at or after `since` (by worker id; workers that finished none are
/// absent). One pass over the attempts.
pub fn jobs_done_since(
    tx: &Transaction<'_>,
    since: Millis,
) -> Result<std::collections::HashMap<String, u32>, Error> {
    Ok(tx
        .prepare_cached(
            "SELECT worker_id, COUNT(*) FROM attempts WHERE outcome = 'done' AND ended_ms >= ?1 GROUP BY worker_id",
        )?
        .query_map([since], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?)
}
