//! The coordinator's one error type, and its one conversion to a gRPC status. Messages name the bad
//! key or value and what to do instead; errors never echo more of a file than its name.

use jetsweep_data::DataError;
use tonic::Status;

/// What kind of trouble a dataset gave: it decides the status a client sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatasetProblem {
    /// No such file or directory.
    NotFound,
    /// The coordinator may not read it.
    Forbidden,
    /// It exists but is not a dataset: wrong columns, bad rows, not a known format, unknown name.
    Invalid,
    /// A prepared file that fails its checksum or cannot be decoded.
    Corrupt,
    /// A download or a read that failed for now; trying again may work.
    Unavailable,
}

impl DatasetProblem {
    /// The kind of a data-crate error.
    pub fn of(e: &DataError) -> Self {
        match e {
            DataError::Io { source, .. } => match source.kind() {
                std::io::ErrorKind::NotFound => DatasetProblem::NotFound,
                std::io::ErrorKind::PermissionDenied => DatasetProblem::Forbidden,
                _ => DatasetProblem::Unavailable,
            },
            DataError::CorruptCache { .. } => DatasetProblem::Corrupt,
            DataError::Download { .. } | DataError::ChecksumMismatch { .. } => {
                DatasetProblem::Unavailable
            }
            _ => DatasetProblem::Invalid,
        }
    }
}

/// Everything the coordinator can refuse or fail at.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Malformed TOML, an unknown key, or a value of the wrong type (the parser's message names the
    /// key and the line).
    #[error("sweep file: {0}")]
    SweepSyntax(String),

    #[error("sweep file: {key}: {reason}")]
    SweepValue { key: String, reason: String },

    #[error(
        "sweep file: the grid has {cells} cells; the limit is {limit}. Split it into several sweeps or shorten its lists"
    )]
    TooManyCells { cells: u128, limit: usize },

    /// A request that is missing a field or carries a value no rule accepts.
    #[error("{0}")]
    InvalidRequest(String),

    /// A worker of another protocol version.
    #[error(
        "worker speaks protocol version {theirs}, this coordinator speaks {ours}: run the same jetsweep release on both"
    )]
    Protocol { theirs: u32, ours: u32 },

    #[error("dataset: {message}")]
    Dataset {
        problem: DatasetProblem,
        message: String,
    },

    #[error("cannot open the state file {path}: {reason}")]
    Open {
        path: std::path::PathBuf,
        reason: String,
    },

    /// Another coordinator runs on this state file.
    #[error(
        "the state file {path} is in use by another coordinator ({holder}); stop it, or give this one another --state"
    )]
    StateInUse {
        path: std::path::PathBuf,
        holder: String,
    },

    #[error(
        "the state file has schema version {found}, newer than this jetsweep knows ({known}); use a newer jetsweep"
    )]
    NewerSchema { found: usize, known: usize },

    #[error("{0} not found")]
    NotFound(String),

    /// The caller's credential may not do this (its message names the credential and the rule).
    #[error("{0}")]
    PermissionDenied(String),

    /// A cancel of a sweep with nothing left to run: nothing was changed.
    #[error(
        "sweep {sweep_id} has already finished ({done} done, {failed} failed, {cancelled} cancelled): there is nothing to cancel, and nothing was changed"
    )]
    SweepFinished {
        sweep_id: String,
        done: u32,
        failed: u32,
        cancelled: u32,
    },

    /// A delete of a sweep that still has work: nothing was changed.
    #[error(
        "sweep {sweep_id} still has {open} jobs queued, running or paused: cancel it first (`jetsweep cancel {sweep_id}`); nothing was deleted"
    )]
    SweepOpen { sweep_id: String, open: u32 },

    /// A report on a lease that is no longer the job's current one: the job expired and was taken by
    /// another lease, or it ended. The worker must drop it.
    #[error("lease {lease_id} is not current: {reason}")]
    StaleLease { lease_id: String, reason: String },

    /// A lease presented by a worker it was not granted to.
    #[error(
        "lease {lease_id} was granted to another worker; a worker may report only on its own leases"
    )]
    NotYourLease { lease_id: String },

    #[error("state file: {0}")]
    Sql(#[from] rusqlite::Error),

    #[error("state file holds unreadable data: {0}")]
    Corrupt(String),

    /// The store could not take the request now (its writer stopped, a commit failed); nothing of
    /// the request was kept. Retrying later may succeed.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

/// A dataset's error as a client may read it: never a file's contents (a CSV's header, a row's
/// values), which belong to the coordinator's machine, not to whoever submitted the sweep.
impl From<DataError> for Error {
    fn from(e: DataError) -> Self {
        let message = match &e {
            DataError::MissingColumn { path, column, .. } => format!(
                "{}: CSV has no column {column:?} (needed: the 16 JSC features and a label column)",
                path.display()
            ),
            DataError::BadRow { path, line, .. } => {
                format!("{}, line {line}: not a row of numbers", path.display())
            }
            other => other.to_string(),
        };
        Error::Dataset {
            problem: DatasetProblem::of(&e),
            message,
        }
    }
}

/// A value of a request the shared vocabulary refused (its message names the field). A sweep
/// file's values are mapped by `sweep`, which names the file's key instead.
impl From<jetsweep_proto::Error> for Error {
    fn from(e: jetsweep_proto::Error) -> Self {
        Error::InvalidRequest(e.to_string())
    }
}

/// Longest status message sent. The message travels in an HTTP/2 header, and a header over the
/// peer's limit (16 KiB by default) breaks the whole connection, not just the call: an error that
/// quotes a huge value (a 100 KB model name) must not take the client's other calls down with it.
pub const MAX_STATUS_MESSAGE_CHARS: usize = 1024;

/// `message`, cut to [`MAX_STATUS_MESSAGE_CHARS`] with a note of how much was left out.
fn bounded(message: String) -> String {
    let chars = message.chars().count();
    if chars <= MAX_STATUS_MESSAGE_CHARS {
        return message;
    }
    let kept: String = message.chars().take(MAX_STATUS_MESSAGE_CHARS).collect();
    format!(
        "{kept}… ({} more characters)",
        chars - MAX_STATUS_MESSAGE_CHARS
    )
}

/// The one mapping from the coordinator's errors to gRPC statuses.
impl From<Error> for Status {
    fn from(e: Error) -> Status {
        let message = bounded(e.to_string());
        match e {
            Error::SweepSyntax(_) | Error::SweepValue { .. } | Error::InvalidRequest(_) => {
                Status::invalid_argument(message)
            }
            Error::TooManyCells { .. } => Status::resource_exhausted(message),
            Error::Protocol { .. }
            | Error::StaleLease { .. }
            | Error::SweepFinished { .. }
            | Error::SweepOpen { .. } => Status::failed_precondition(message),
            Error::Dataset { problem, .. } => match problem {
                DatasetProblem::NotFound => Status::not_found(message),
                DatasetProblem::Forbidden => Status::permission_denied(message),
                DatasetProblem::Invalid => Status::invalid_argument(message),
                DatasetProblem::Corrupt => Status::data_loss(message),
                DatasetProblem::Unavailable => Status::unavailable(message),
            },
            Error::NotFound(_) => Status::not_found(message),
            Error::NotYourLease { .. } | Error::PermissionDenied(_) => {
                Status::permission_denied(message)
            }
            Error::Unavailable(_) => Status::unavailable(message),
            Error::Open { .. }
            | Error::StateInUse { .. }
            | Error::NewerSchema { .. }
            | Error::Sql(_)
            | Error::Corrupt(_) => Status::internal(message),
        }
    }
}
