//! What each listed sweep has cost and found (`jobs::SweepActivity`), kept between the sweep
//! list's polls. Reading it costs time in proportion to the sweep's jobs; the list asks every few
//! seconds. An entry holds while the sweep's counts of ended and running jobs stand: nothing then
//! ended and nothing started, so the best trial and the mean finished attempt are the same, and
//! the compute time has only grown by the running jobs' time since it was read.

use jetsweep_proto::sync;
use std::collections::HashMap;
use std::sync::Mutex;

use crate::clock::Millis;
use crate::jobs::SweepActivity;

/// Most sweeps kept (a list page shows 50; more than this and the cache starts over).
const ENTRIES: usize = 1_000;

/// A sweep's counts the entry was read at: ended jobs (done, failed, cancelled) and running ones.
pub type Counts = (u32, u32);

#[derive(Default)]
pub struct ActivityCache {
    entries: Mutex<HashMap<String, (Counts, Millis, SweepActivity)>>,
}

impl ActivityCache {
    /// The sweep's activity at `now`, if one read at the same `counts` is kept.
    pub fn get(&self, sweep: &str, counts: Counts, now: Millis) -> Option<SweepActivity> {
        let entries = sync::lock(&self.entries);
        let (kept_counts, read_at, activity) = entries.get(sweep)?;
        if *kept_counts != counts {
            return None;
        }
        Some(SweepActivity {
            compute_ms: activity.compute_ms + activity.open_packs * (now - read_at).max(0),
            ..activity.clone()
        })
    }

    /// Keeps `activity`, read at `now` when the sweep had `counts`.
    pub fn put(&self, sweep: &str, counts: Counts, now: Millis, activity: SweepActivity) {
        let mut entries = sync::lock(&self.entries);
        if entries.len() >= ENTRIES && !entries.contains_key(sweep) {
            entries.clear();
        }
        entries.insert(sweep.to_string(), (counts, now, activity));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::BestTrial;

    #[test]
    fn an_entry_holds_while_the_counts_do_and_running_time_accrues() {
        let cache = ActivityCache::default();
        let read = SweepActivity {
            compute_ms: 10_000,
            open_packs: 2,
            mean_done_ms: Some(2_000.0),
            best: Some(BestTrial {
                job_id: "j".into(),
                best_test_acc: 0.7,
            }),
        };
        cache.put("s", (4, 2), 1_000, read.clone());
        let later = cache.get("s", (4, 2), 4_000).unwrap();
        assert_eq!(
            later.compute_ms,
            10_000 + 2 * 3_000,
            "two packs ran 3 s more"
        );
        assert_eq!(
            (later.mean_done_ms, later.best),
            (read.mean_done_ms, read.best)
        );
        assert!(cache.get("s", (5, 1), 4_000).is_none(), "a job ended");
        assert!(cache.get("t", (4, 2), 4_000).is_none());
    }
}
