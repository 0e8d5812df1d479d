//! The coordinator's error types. Messages name the bad key or value and what to do instead.

/// A sweep file that cannot be run.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// Malformed TOML, an unknown key, or a value of the wrong type (the parser's message names the
    /// key and the line).
    #[error("sweep file: {0}")]
    Syntax(String),

    #[error("sweep file: {key}: {reason}")]
    BadValue { key: String, reason: String },

    #[error(
        "sweep file: the grid has {cells} cells; the limit is {limit}. Split it into several sweeps or shorten its lists"
    )]
    TooManyCells { cells: u128, limit: usize },
}

/// The store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the state file {path}: {reason}")]
    Open {
        path: std::path::PathBuf,
        reason: String,
    },

    #[error(
        "the state file has schema version {found}, newer than this jetsweep knows ({known}); use a newer jetsweep"
    )]
    NewerSchema { found: usize, known: usize },

    #[error("{0} not found")]
    NotFound(String),

    /// A report on a lease that is no longer the job's current one: the job expired and was taken by
    /// another lease, or it ended. The worker must drop it.
    #[error("lease {lease_id} is not current: {reason}")]
    StaleLease { lease_id: String, reason: String },

    #[error("state file: {0}")]
    Sql(#[from] rusqlite::Error),

    #[error("state file holds unreadable data: {0}")]
    Corrupt(String),

    /// The store could not take the request now (its writer stopped, a commit failed); nothing of
    /// the request was kept. Retrying later may succeed.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}
