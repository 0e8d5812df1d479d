//! Fair share: which sweep the next pack a worker asks for comes from. Among the sweeps with queued
//! jobs that the worker's device class may take (`device`) and that are under their cap
//! (`max_running`), the one with the fewest running jobs per unit of `priority`; ties go to the
//! sweep served longest ago (round robin: with one worker, or jobs that end before the next
//! lease, running counts stay equal and sweeps take turns), then to the oldest queue. Within a sweep, jobs go oldest first, as before (a
//! promoted or resumed job keeps its old place). So a 10-job sweep submitted after a 100,000-job
//! one gets half the workers at once instead of waiting for the big one to end.
//!
//! A queued job belongs to the sweep that last submitted it (`jobs.last_sweep`). The active sweeps
//! are found by skipping through the queue's index by sweep (one seek per active sweep), and each
//! one's running count is kept in a small row of `sweep_shares` (leasing adds a pack at once; a trigger
//! takes a job off when it stops running, migration 24): the cost of a lease grows with the number
//! of active sweeps, not with the queue or the cluster.

use rusqlite::{OptionalExtension, Transaction};

use crate::Error;
use crate::sweep::Device;

/// Most active sweeps weighed per lease (past it, those first in the index's order).
const MAX_ACTIVE: usize = 1000;

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
        // A skip scan of the queue's index by sweep: each step is one seek to the next sweep's
        // oldest queued job (two small statements, cheaper than one recursive query).
        let mut next_active = tx.prepare_cached(
            "SELECT last_sweep, queued_seq FROM jobs
             WHERE state = 'queued' AND last_sweep > ?1
             ORDER BY last_sweep, queued_seq LIMIT 1",
        )?;
        let mut share_of = tx.prepare_cached(
            "SELECT priority, max_running, device, last_served, running FROM sweep_shares WHERE sweep_id = ?1",
        )?;
        let mut rows = Vec::new();
        let mut after = String::new();
        while rows.len() < MAX_ACTIVE {
            let Some((sweep, seq)) = next_active
                .query_row([&after], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
                })
                .optional()?
            else {
                break;
            };
            let share = share_of
                .query_row([&sweep], |r| {
                    Ok((
                        r.get::<_, f64>(0)?,
                        r.get::<_, Option<u32>>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, i64>(4)?,
                    ))
                })
                .optional()?;
            if let Some((priority, cap, class, last_served, running)) = share {
                rows.push((
                    sweep.clone(),
                    seq,
                    priority,
                    cap,
                    class,
                    last_served,
                    running,
                ));
            }
            after = sweep;
        }
        let mut sweeps = Vec::new();
        for (sweep, oldest_seq, priority, cap, class, last_served, running) in rows {
            if !Device::parse(&class).unwrap_or_default().admits(device) {
                continue;
            }
            sweeps.push(Share {
                running: u32::try_from(running).unwrap_or(0),
                sweep,
                priority: if priority > 0.0 { priority } else { 1.0 },
                cap,
                last_served,
                oldest_seq,
            });
        }
        // Turns are counted among the sweeps that compete now.
        let tick = sweeps.iter().map(|s| s.last_served).max().unwrap_or(0);
        Ok(Shares { sweeps, tick })
    }

    /// Records that `sweep` was served now (only where there is another to take turns with: a
    /// lone sweep's turn order does not matter, and its lease writes nothing more).
    pub(super) fn served(&mut self, sweep: &str) {
        if self.sweeps.len() < 2 {
            return;
        }
        self.tick += 1;
        if let Some(s) = self.sweeps.iter_mut().find(|s| s.sweep == sweep) {
            s.last_served = self.tick;
        }
    }

    /// Stores what serving a pack of `jobs` from `sweep` changed, in one statement: its running
    /// count (leasing keeps it; the triggers of migration 24 take a job off when it stops running)
    /// and its turn.
    pub(super) fn record(&self, tx: &Transaction<'_>, sweep: &str, jobs: u32) -> Result<(), Error> {
        let turn = self
            .sweeps
            .iter()
            .find(|s| s.sweep == sweep)
            .map_or(0, |s| s.last_served);
        tx.prepare_cached(
            "UPDATE sweep_shares SET running = running + ?2, last_served = max(last_served, ?3) WHERE sweep_id = ?1",
        )?
        .execute(rusqlite::params![sweep, jobs, turn])?;
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
