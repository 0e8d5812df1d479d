//! The names of a job's states, and their one string mapping (the store's `state` column and the
//! CLI's tables use it; the wire has its own enum, converted in [`crate::convert`]).
//!
//! ```text
//! queued ──lease──▶ leased ──complete──▶ done
//!    ▲                │ │
//!    └── fail/expiry ─┘ └── fail/expiry on the last attempt ──▶ failed
//! queued/leased ──cancel──▶ cancelled
//! leased ──pause (asynchronous halving, at a rung)──▶ paused ──promote──▶ queued (resumes)
//! ```

use std::fmt;
use std::str::FromStr;

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobStatus {
    /// Waiting for a worker.
    Queued,
    /// Held by a worker under a lease.
    Leased,
    Done,
    /// Failed on its last allowed attempt.
    Failed,
    Cancelled,
    /// Stopped at a rung of asynchronous halving, its state saved: queued again (to resume) when
    /// its point is promoted, cancelled if the sweep ends first.
    Paused,
}

impl JobStatus {
    pub const ALL: [JobStatus; 6] = [
        JobStatus::Queued,
        JobStatus::Leased,
        JobStatus::Done,
        JobStatus::Failed,
        JobStatus::Cancelled,
        JobStatus::Paused,
    ];

    /// Not ended: it will train (queued, paused) or trains now (leased).
    pub fn is_open(self) -> bool {
        matches!(
            self,
            JobStatus::Queued | JobStatus::Leased | JobStatus::Paused
        )
    }

    /// The name people read (the dashboard, the CLI, /metrics): a leased job is "running".
    /// [`JobStatus::as_str`] is the stored name.
    pub fn shown(self) -> &'static str {
        match self {
            JobStatus::Leased => "running",
            other => other.as_str(),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Leased => "leased",
            JobStatus::Done => "done",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
            JobStatus::Paused => "paused",
        }
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a state. There is no default: a reader that meets one has corrupt data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a job state (queued, leased, done, failed, cancelled, paused)")]
pub struct UnknownState(pub String);

impl FromStr for JobStatus {
    type Err = UnknownState;

    fn from_str(s: &str) -> Result<Self, UnknownState> {
        JobStatus::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| UnknownState(s.chars().take(64).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_maps_to_its_name_and_back_and_nothing_else_parses() {
        for s in JobStatus::ALL {
            assert_eq!(s.as_str().parse::<JobStatus>(), Ok(s));
        }
        assert!("running".parse::<JobStatus>().is_err());
        assert!("".parse::<JobStatus>().is_err());
        assert!("Done".parse::<JobStatus>().is_err());
    }
}
