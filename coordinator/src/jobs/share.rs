//! Fair share: which sweep the next pack a worker asks for comes from. Among the sweeps with queued
//! jobs that the worker's device class may take (`device`) and that are under their cap
//! (`max_running`), the one with the fewest running jobs per unit of `priority`; ties go to the
//! sweep served longest ago (round robin: with one worker, or jobs that end before the next
//! lease, running counts stay equal and sweeps take turns), then to the oldest queue. Within a sweep, jobs go oldest first, as before (a
//! promoted or resumed job keeps its old place). So a 10-job sweep submitted after a 100,000-job
//! one gets half the workers at once instead of waiting for the big one to end.
//!
//! A queued job belongs to the sweep that last submitted it (`jobs.last_sweep`). The active sweeps
//! are found by skipping through the queue's index by sweep (one seek per active sweep), and the
//! running counts by one pass over the leased jobs (as many as the workers' slots): the cost of a
//! lease grows with the number of active sweeps, not with the queue.

use rusqlite::Transaction;

use crate::Error;
use crate::sweep::Device;

/// Most active sweeps weighed per lease: past it, the ones with the oldest queued jobs.
const MAX_ACTIVE: u32 = 1000;

#[derive(Debug, Clone, PartialEq)]
struct Share {
    sweep: String,
    running: u32,
    priority: f64,
    cap: Option<u32>,
    last_served: i64,
    oldest_seq: i64,
}

/// The active sweeps a worker may take jobs from, with what each is running.
#[derive(Debug, Default)]
pub(super) struct Shares {
    sweeps: Vec<Share>,
    /// The last tick any sweep was served at.
    tick: i64,
}

impl Shares {
    /// The sweeps with queued jobs that a worker of class `device` may take, and their running
    /// counts.
    pub(super) fn load(tx: &Transaction<'_>, device: Device) -> Result<Shares, Error> {
        let mut running: std::collections::HashMap<String, u32> = std::collections::HashMap::new();
        {
            let mut stmt = tx.prepare_cached(
                "SELECT last_sweep, COUNT(*) FROM jobs WHERE state = 'leased' AND last_sweep IS NOT NULL GROUP BY last_sweep",
            )?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u32>(1)?)))?;
            for row in rows {
                let (sweep, n) = row?;
                running.insert(sweep, n);
            }
        }
        let mut stmt = tx.prepare_cached(
            "WITH RECURSIVE active(sweep, seq) AS (
                 SELECT * FROM (SELECT last_sweep, queued_seq FROM jobs
                                WHERE state = 'queued' AND last_sweep IS NOT NULL
                                ORDER BY last_sweep, queued_seq LIMIT 1)
                 UNION ALL
                 SELECT j.last_sweep, j.queued_seq FROM active a JOIN jobs j ON j.rowid = (
                     SELECT rowid FROM jobs WHERE state = 'queued' AND last_sweep > a.sweep
                     ORDER BY last_sweep, queued_seq LIMIT 1)
             )
             SELECT a.sweep, a.seq, w.priority, w.max_running, w.device, w.last_served
             FROM active a JOIN sweeps w ON w.id = a.sweep
             ORDER BY a.seq LIMIT ?1",
        )?;
        let rows = stmt.query_map([MAX_ACTIVE], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, f64>(2)?,
                r.get::<_, Option<u32>>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, i64>(5)?,
            ))
        })?;
        let mut sweeps = Vec::new();
        for row in rows {
            let (sweep, oldest_seq, priority, cap, class, last_served) = row?;
            if !Device::parse(&class).unwrap_or_default().admits(device) {
                continue;
            }
            sweeps.push(Share {
                running: running.get(&sweep).copied().unwrap_or(0),
                sweep,
                priority: if priority > 0.0 { priority } else { 1.0 },
                cap,
                last_served,
                oldest_seq,
            });
        }
        let tick = if sweeps.len() > 1 {
            tx.prepare_cached("SELECT COALESCE(MAX(last_served), 0) FROM sweeps")?
                .query_row([], |r| r.get(0))?
        } else {
            0
        };
        Ok(Shares { sweeps, tick })
    }

    /// Records that `sweep` was served now (only where there is another to take turns with: a
    /// lone sweep's turn order does not matter, and its lease writes nothing more).
    pub(super) fn served(&mut self, tx: &Transaction<'_>, sweep: &str) -> Result<(), Error> {
        if self.sweeps.len() < 2 {
            return Ok(());
        }
        self.tick += 1;
        tx.prepare_cached("UPDATE sweeps SET last_served = ?2 WHERE id = ?1")?
            .execute(rusqlite::params![sweep, self.tick])?;
        if let Some(s) = self.sweeps.iter_mut().find(|s| s.sweep == sweep) {
            s.last_served = self.tick;
        }
        Ok(())
    }

    /// The sweep the next pack comes from, and how many jobs it may still start (its cap's room).
    pub(super) fn next(&self) -> Option<(String, u32)> {
        self.sweeps
            .iter()
            .filter(|s| s.cap.is_none_or(|cap| s.running < cap))
            .min_by(|a, b| {
                let (x, y) = (
                    f64::from(a.running) / a.priority,
                    f64::from(b.running) / b.priority,
                );
                x.total_cmp(&y)
                    .then(a.last_served.cmp(&b.last_served))
                    .then(a.oldest_seq.cmp(&b.oldest_seq))
            })
            .map(|s| {
                (
                    s.sweep.clone(),
                    s.cap.map_or(u32::MAX, |cap| cap - s.running),
                )
            })
    }

    /// `sweep` started `n` more jobs.
    pub(super) fn charge(&mut self, sweep: &str, n: u32) {
        if let Some(s) = self.sweeps.iter_mut().find(|s| s.sweep == sweep) {
            s.running += n;
        }
    }

    /// `sweep` has no queued job left.
    pub(super) fn drop_sweep(&mut self, sweep: &str) {
        self.sweeps.retain(|s| s.sweep != sweep);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share(sweep: &str, running: u32, priority: f64, cap: Option<u32>, seq: i64) -> Share {
        Share {
            sweep: sweep.into(),
            running,
            priority,
            cap,
            last_served: 0,
            oldest_seq: seq,
        }
    }

    fn of(sweeps: Vec<Share>) -> Shares {
        Shares { sweeps, tick: 0 }
    }

    #[test]
    fn the_next_pack_goes_to_the_sweep_with_the_fewest_running_per_priority() {
        let mut shares = of(vec![
            share("big", 4, 1.0, None, 1),
            share("small", 0, 1.0, None, 900),
        ]);
        assert_eq!(shares.next(), Some(("small".into(), u32::MAX)));
        shares.charge("small", 4);
        // Equal: the older queue first.
        assert_eq!(shares.next().unwrap().0, "big");
        // Priority 2: twice the share.
        let shares = of(vec![
            share("a", 2, 1.0, None, 1),
            share("b", 3, 2.0, None, 2),
        ]);
        assert_eq!(shares.next().unwrap().0, "b");
        // A capped sweep at its cap waits; below it, its room is the rest of the cap.
        let mut shares = of(vec![
            share("capped", 3, 1.0, Some(3), 1),
            share("x", 9, 1.0, None, 2),
        ]);
        assert_eq!(shares.next().unwrap().0, "x");
        shares.drop_sweep("x");
        assert_eq!(shares.next(), None);
        let shares = of(vec![share("capped", 1, 1.0, Some(3), 1)]);
        assert_eq!(shares.next(), Some(("capped".into(), 2)));
    }
}
