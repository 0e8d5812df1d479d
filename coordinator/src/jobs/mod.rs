//! The job lifecycle, as plain synchronous functions over one store transaction. Each takes `now`
//! (Unix milliseconds, from the coordinator's [`crate::clock::Clock`]) as an argument, so the rules
//! are tested without sockets or sleeps.
//!
//! ```text
//! queued ──lease──▶ leased ──complete──▶ done
//!    ▲                │ │
//!    └── fail/expiry ─┘ └── fail/expiry on the last attempt ──▶ failed
//! queued/leased ──cancel (all of the job's sweeps cancelled)──▶ cancelled
//! ```
//!
//! Fencing: a lease id is `SEQ.JOB.ATTEMPT`. Only the job's current lease may report, extend, complete or
//! fail it; once a lease expires the job is queued again under a higher attempt number, so a slow or
//! partitioned worker's late reports are refused and can never write a second result. Completing twice
//! with the same lease is harmless.
//!
//! - [`submit`](submit()): a sweep and its jobs, reusing finished cells.
//! - `lease`: leasing, heartbeats, expiry, and the fencing check every report goes through.
//! - `complete`: epoch reports, completion and failure.
//! - `grants`: leases remembered per request, so a retried request gets the same ones.
//! - `cancel`: cancelling a sweep and its jobs.
//! - `queries`: reads for status, results and the wire.
//! - `workers`: the worker registry.
//! - `halving`, `arrivals`: early stopping (sync rungs; ASHA and the median rule), and
//!   `decision_log`: its decisions read back.
//! - `rows`: how a job row is read back, states decoded by their one mapping.
//! - `audit`: who submitted and cancelled what; `share`: which sweep the next lease serves.
//! - `invalidate`: forgetting what a distrusted worker produced; `models`: kept weights.
//! - `trial`: one trial in its sweep (attempts, epochs, its point's seeds) for the trial page.

mod arrivals;
pub mod audit;
mod cancel;
mod checkpoints;
mod complete;
mod decision_log;
mod delete;
mod grants;
pub mod halving;
mod invalidate;
mod lease;
pub mod models;
mod queries;
mod rows;
mod share;
mod submit;
mod suggest;
mod trial;
mod workers;

pub use cancel::{cancel_effect, cancel_sweep};
pub use checkpoints::{Checkpoint, fetch_checkpoint};
pub use complete::{ReportAck, complete, fail, release, report_epoch};
pub use decision_log::{DecisionRow, RungTally, Stopping, decisions_page, rung_tallies};
pub use delete::{Deleted, delete_sweep};
pub use grants::lease_for_request;
pub use invalidate::{Invalidated, invalidate_worker};
pub use lease::{
    Ask, MAX_LOST, Pack, expire_leases, extend_leases_after_start, heartbeat, job_of_lease,
    lease_jobs, release_all,
};
pub use queries::{
    BestTrial, JobCurve, SweepActivity, curves_page, dataset_by_sha, datasets_in_use, epochs_of,
    get_job, jobs_page, last_epoch_row, list_jobs, open_work, sweep_activity, sweep_changes,
    sweep_counts, sweep_curves, sweep_head, sweep_outcomes, sweeps_page,
};
pub use submit::submit;
pub use trial::{Attempt, MAX_POINT_SEEDS, TrialDetail, is_trial_of, trial_detail};
pub use workers::{
    Presence, WorkerRecord, forget_workers, jobs_done_since, list_workers, register_worker,
};

pub use crate::clock::Millis;
use jetsweep_proto::dataset::DatasetRef;
use jetsweep_proto::metrics::{EpochMetrics, EpochSummary, TrialResult};
use jetsweep_proto::state::JobStatus;

use crate::sweep::Trial;

/// Where a job is, with the data that state carries.
#[derive(Debug, Clone, PartialEq)]
pub enum JobState {
    Queued,
    Leased {
        worker: String,
        lease: String,
        expires_at: Millis,
    },
    Done {
        result: TrialResult,
        /// Read off the stored epochs at completion; absent when some were never reported.
        summary: Option<EpochSummary>,
    },
    Failed {
        error: String,
    },
    Cancelled {
        reason: String,
    },
    /// At a rung of asynchronous halving, waiting for its point to be promoted.
    Paused {
        reason: String,
    },
}

impl JobState {
    /// The state's name, without its data.
    pub fn status(&self) -> JobStatus {
        match self {
            JobState::Queued => JobStatus::Queued,
            JobState::Leased { .. } => JobStatus::Leased,
            JobState::Done { .. } => JobStatus::Done,
            JobState::Failed { .. } => JobStatus::Failed,
            JobState::Cancelled { .. } => JobStatus::Cancelled,
            JobState::Paused { .. } => JobStatus::Paused,
        }
    }
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: String,
    pub trial: Trial,
    pub dataset_sha256: String,
    pub state: JobState,
    pub attempts: u32,
    pub max_attempts: u32,
    pub epochs_done: u32,
    pub latest: Option<EpochMetrics>,
    /// The sweep it was last submitted with (a job may be shared by several).
    pub sweep_id: Option<String>,
    /// The worker of its latest attempt, when it is not running now: who ran a finished job.
    /// Read for the job lists only (`None` elsewhere).
    pub last_worker: Option<String>,
}

/// What a worker gets when it leases a job.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaseGrant {
    pub lease_id: String,
    pub job: Job,
    pub attempt: u32,
    pub expires_at: Millis,
    /// The epoch a previous attempt saved the trial's state after: resume from there.
    pub resume_epoch: Option<u32>,
}

/// A sweep's counts by state.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SweepCounts {
    pub id: String,
    pub name: String,
    pub created_ms: Millis,
    pub dataset: Option<DatasetRef>,
    pub total: u32,
    pub queued: u32,
    pub leased: u32,
    pub done: u32,
    pub failed: u32,
    pub cancelled: u32,
    /// Paused at a rung (asynchronous halving): not finished, not running.
    pub paused: u32,
    pub reused: u32,
    pub cancel_requested: bool,
    /// The credential that submitted it ("anonymous" on an open coordinator).
    pub submitted_by: String,
    /// Trial-epochs trained (each job's epochs reported so far, reused jobs' included) and the
    /// sweep's total: an open job counts all its epochs, an ended one those it trained (a
    /// stopped trial's remaining epochs will never run).
    pub epochs_done: u64,
    pub epochs_total: u64,
}

impl SweepCounts {
    /// Every job has ended (done, failed or cancelled).
    pub fn finished(&self) -> bool {
        self.queued == 0 && self.leased == 0 && self.paused == 0
    }

    /// The count of jobs in `status`.
    pub fn count_mut(&mut self, status: JobStatus) -> &mut u32 {
        match status {
            JobStatus::Queued => &mut self.queued,
            JobStatus::Leased => &mut self.leased,
            JobStatus::Done => &mut self.done,
            JobStatus::Failed => &mut self.failed,
            JobStatus::Cancelled => &mut self.cancelled,
            JobStatus::Paused => &mut self.paused,
        }
    }
}

#[cfg(test)]
mod tests;
