//! The worker crate's one error type. Messages name the bad value and what to do instead.

use jetsweep_data::DataError;

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// A value the shared vocabulary refuses (a model name, a hyperparameter), or a coordinator
    /// address or token it cannot use.
    #[error(transparent)]
    Contract(#[from] jetsweep_proto::Error),

    #[error("{0}")]
    Invalid(String),

    #[error("device {0}")]
    Device(String),

    #[error(transparent)]
    Data(#[from] DataError),

    #[error("training stopped: {0}")]
    Stopped(String),

    /// The trial's numbers stopped being numbers (a loss of NaN or infinity): training it again
    /// gives the same, so the job fails for good.
    #[error("diverged at epoch {epoch}: {what}")]
    Diverged { epoch: u32, what: String },

    /// The coordinator refused or failed a call (after retries, where retrying made sense).
    #[error("coordinator: {call}: {}", .status.message())]
    Rpc {
        call: &'static str,
        status: tonic::Status,
    },

    /// A dataset fetched from the coordinator that is not the one the job named.
    #[error("dataset {sha256} from the coordinator: {reason}; not used")]
    DatasetMismatch { sha256: String, reason: String },

    /// A lease without what every lease carries.
    #[error("lease {lease}: {what}")]
    BadLease { lease: String, what: String },

    /// Saved trial state (from the coordinator, to resume a trial) that this trial cannot use.
    #[error("checkpoint not usable: {0}")]
    Checkpoint(String),

    /// A training or I/O task of this process died (a panic in it, or the runtime stopping).
    #[error("worker task failed: {0}")]
    Task(String),
}

impl WorkerError {
    /// A failed call to the coordinator, named.
    pub fn rpc(call: &'static str) -> impl FnOnce(tonic::Status) -> WorkerError {
        move |status| WorkerError::Rpc { call, status }
    }
}

impl From<tokio::task::JoinError> for WorkerError {
    fn from(e: tokio::task::JoinError) -> Self {
        WorkerError::Task(e.to_string())
    }
}
