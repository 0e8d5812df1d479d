//! The worker crate's error type. Messages name the bad value and what to do instead.

use jetsweep_data::DataError;

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(
        "unknown model {0:?}: use jsc-tiny, jsc-toy, jsc-s, jsc-tiny-x10, or mlp:W1,W2,... (hidden widths)"
    )]
    UnknownModel(String),

    #[error("{0}")]
    Invalid(String),

    #[error("device {0}")]
    Device(String),

    #[error(transparent)]
    Data(#[from] DataError),

    #[error("training stopped: {0}")]
    Stopped(String),
}
