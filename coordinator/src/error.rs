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
