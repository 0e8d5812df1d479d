//! The aggregated results of the sweeps read most recently, so that reading a large sweep's results
//! page by page aggregates it once, not once per page. An entry is keyed by the sweep and its count
//! of ended jobs (done, failed or cancelled): a job that ended never changes, and a point's pending
//! seeds are the ones not ended, so while that count stands the aggregate does too.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use crate::results::Aggregate;
use jetsweep_proto::dataset::DatasetRef;
use jetsweep_proto::sync;

/// A sweep's results and the dataset they were measured on.
pub type Aggregated = (Aggregate, Option<DatasetRef>);

/// How many sweeps' results are kept.
const ENTRIES: usize = 4;

#[derive(Default)]
pub struct ResultsCache {
    /// Most recently used last: (sweep, ended jobs, aggregate).
    entries: Mutex<VecDeque<(String, u32, Arc<Aggregated>)>>,
}

impl ResultsCache {
    /// The aggregate of `sweep` when it had `done` ended jobs, if kept.
    pub fn get(&self, sweep: &str, done: u32) -> Option<Arc<Aggregated>> {
        let mut entries = sync::lock(&self.entries);
        let i = entries
            .iter()
            .position(|(s, d, _)| s == sweep && *d == done)?;
        let entry = entries.remove(i)?;
        let found = entry.2.clone();
        entries.push_back(entry);
        Some(found)
    }

    /// Keeps `aggregated`, the results of `sweep` with `done` ended jobs, dropping the entry used
    /// least recently when full (and any older aggregate of the same sweep).
    pub fn put(&self, sweep: &str, done: u32, aggregated: Arc<Aggregated>) {
        let mut entries = sync::lock(&self.entries);
        entries.retain(|(s, _, _)| s != sweep);
        if entries.len() == ENTRIES {
            entries.pop_front();
        }
        entries.push_back((sweep.to_string(), done, aggregated));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_holds_while_the_finished_count_does() {
        let cache = ResultsCache::default();
        let one = Arc::new((
            Aggregate {
                best: Some(1),
                ..Default::default()
            },
            None,
        ));
        cache.put("a", 10, one.clone());
        assert!(cache.get("a", 10).is_some_and(|a| Arc::ptr_eq(&a, &one)));
        assert!(cache.get("a", 11).is_none(), "one more job finished");
        for s in ["b", "c", "d", "e"] {
            cache.put(s, 1, Arc::new((Aggregate::default(), None)));
        }
        assert!(cache.get("a", 10).is_none(), "the least recently used went");
        assert!(cache.get("e", 1).is_some());
    }
}
