//! Fair share: which sweep the next pack a worker asks for comes from. Among the sweeps with queued
//! jobs that the worker's device class may take (`device`) and that are under their cap
//! (`max_running`), the one with the fewest running jobs per unit of `priority`; ties go to the
//! sweep served longest ago (round robin: with one worker, or jobs that end before the next
//! lease, running counts stay equal and sweeps take turns), then to the one submitted first. Within
//! a sweep, jobs go oldest first, as before (a promoted or resumed job keeps its old place). So a
//! 10-job sweep submitted after a 100,000-job one gets half the workers at once instead of waiting
//! for the big one to end.
//!
//! A queued job belongs to the sweep that last submitted it (`jobs.last_sweep`). Each sweep has a
//! small row in `sweep_shares` with its running count (leasing adds a pack at once; only jobs
//! leased while another sweep competes or under a cap are counted, and marked `jobs.counted`; every
//! update that ends a lease clears the mark, and a trigger on the mark takes the job off, migration
//! 27) and whether it may have queued jobs (`active`: set by submit and, through a trigger on
//! `queued_seq`, by every requeue; cleared when a lease finds none, migration 25). A partial index orders the active sweeps by running per
//! priority, turn and age, so choosing reads the first admissible row: the cost of a lease does
//! not grow with the number of active sweeps, the queue or the cluster (only sweeps passed over,
//! at their cap or for another device class, are read past).

use rusqlite::Transaction;

use crate::Error;
use crate::sweep::Device;

/// Most active sweeps read past to find one a worker may take jobs from.
const MAX_PASSED: usize = 1000;

/// A sweep whose turn it is.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Turn {
    pub sweep: String,
    /// How many jobs it may still start (its cap's room; `u32::MAX` without a cap).
    pub room: u32,
    /// Another sweep has queued jobs too: serving this one counts as its turn.
    pub contended: bool,
    /// It has a cap (`max_running`).
    pub capped: bool,
}

impl Turn {
    /// Whether the jobs leased on this turn go into the sweep's running count: where the count
    /// decides something (another sweep competes, or a cap binds). A sweep alone and uncapped
    /// leases without the count's upkeep; its running jobs then read as fewer than they are, so
    /// when another sweep arrives the two take turns until its uncounted jobs end.
    pub fn counts(&self) -> bool {
        self.contended || self.capped
    }
}

/// The fair share as one worker sees it.
#[derive(Debug)]
pub(super) struct Shares<'w> {
    worker: &'w str,
    /// Its device class, read the first time a sweep asks for one (most sweeps take any).
    device: std::cell::OnceCell<Device>,
}

impl<'w> Shares<'w> {
    pub(super) fn for_worker(worker: &'w str) -> Shares<'w> {
        Shares {
            worker,
            device: std::cell::OnceCell::new(),
        }
    }

    /// Whether a sweep that asks for device class `class` may take this worker.
    fn admits(&self, tx: &Transaction<'_>, class: &str) -> Result<bool, Error> {
        let wanted = Device::parse(class).unwrap_or_default();
        if wanted == Device::Any {
            return Ok(true);
        }
        let device = match self.device.get() {
            Some(d) => *d,
            None => {
                let d = Device::of_worker(&super::workers::worker_device(tx, self.worker)?);
                *self.device.get_or_init(|| d)
            }
        };
        Ok(wanted.admits(device))
    }

    /// The sweep the next pack comes from, if any sweep with queued jobs is open to this worker.
    pub(super) fn next(&self, tx: &Transaction<'_>) -> Result<Option<Turn>, Error> {
        let mut stmt = tx.prepare_cached(
            "SELECT sweep_id, running, max_running, device FROM sweep_shares
             WHERE active = 1 ORDER BY running / priority, last_served, seq",
        )?;
        let mut rows = stmt.query([])?;
        let mut chosen: Option<Turn> = None;
        let mut passed = 0;
        while let Some(r) = rows.next()? {
            if let Some(turn) = chosen.as_mut() {
                turn.contended = true;
                break;
            }
            let (sweep, running, cap, class): (String, i64, Option<i64>, String) =
                (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
            let admits = self.admits(tx, &class)?;
            let room = cap.map_or(u32::MAX, |cap| {
                u32::try_from(cap.saturating_sub(running)).unwrap_or(0)
            });
            if admits && room > 0 {
                chosen = Some(Turn {
                    sweep,
                    room,
                    contended: passed > 0,
                    capped: cap.is_some(),
                });
            } else {
                passed += 1;
                if passed >= MAX_PASSED {
                    break;
                }
            }
        }
        Ok(chosen)
    }

    /// Stores what serving a pack of `jobs` from `turn`'s sweep changed, in one statement: its
    /// running count (leasing keeps it; migration 27's trigger takes a counted job off when its
    /// lease ends) and, when other sweeps wait too, its turn (a counter every served turn
    /// advances). Nothing when the turn is not counted ([`Turn::counts`]).
    pub(super) fn record(&self, tx: &Transaction<'_>, turn: &Turn, jobs: u32) -> Result<(), Error> {
        if !turn.counts() {
            return Ok(());
        }
        if turn.contended {
            tx.prepare_cached(
                "UPDATE sweep_shares SET running = running + ?2,
                        last_served = (SELECT value FROM counters WHERE name = 'turns')
                  WHERE sweep_id = ?1",
            )?
            .execute(rusqlite::params![turn.sweep, jobs])?;
            tx.prepare_cached("UPDATE counters SET value = value + 1 WHERE name = 'turns'")?
                .execute([])?;
        } else {
            tx.prepare_cached(
                "UPDATE sweep_shares SET running = running + ?2 WHERE sweep_id = ?1",
            )?
            .execute(rusqlite::params![turn.sweep, jobs])?;
        }
        Ok(())
    }

    /// `sweep` has no queued job left: it stops competing until a job of it is queued again.
    pub(super) fn drop_sweep(&self, tx: &Transaction<'_>, sweep: &str) -> Result<(), Error> {
        tx.prepare_cached("UPDATE sweep_shares SET active = 0 WHERE sweep_id = ?1")?
            .execute([sweep])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::store::Store;

    /// Choosing a sweep reads the partial index in its order (no sort, no scan of every sweep).
    #[test]
    fn the_next_sweep_is_read_from_the_turns_index_without_sorting() {
        let mut store = Store::in_memory().unwrap();
        let plan: Vec<String> = store
            .read(|tx| {
                let mut stmt = tx.prepare(
                    "EXPLAIN QUERY PLAN SELECT sweep_id, running, max_running, device FROM sweep_shares
                     WHERE active = 1 ORDER BY running / priority, last_served, seq",
                )?;
                let rows = stmt.query_map([], |r| r.get::<_, String>(3))?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .unwrap();
        let plan = plan.join("; ");
        assert!(plan.contains("USING INDEX sweep_shares_turns"), "{plan}");
        assert!(!plan.contains("TEMP B-TREE"), "{plan}");
    }
}
