//! The one error type of the data crate. Every message names the bad value and says what to do.

use std::path::PathBuf;

/// Everything that can go wrong while finding, reading, preparing or caching a dataset.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error(
        "unknown dataset {0:?}: use `synthetic`, `synthetic:ROWS`, `openml`, a .csv file, an MASE .z/.h5 file, a prepared .jsd file, or a directory of .npy files"
    )]
    UnknownDataset(String),

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "{path}: not a usable jetsweep dataset file: {reason}. Delete it and it will be prepared again"
    )]
    CorruptCache { path: PathBuf, reason: String },

    #[error(
        "{path}: CSV has no column {column:?} (needed: the 16 JSC features, with or without the `j_` prefix, and a label column `label`, `class` or one-hot j_g,j_q,j_w,j_z,j_t); columns found: {found}"
    )]
    MissingColumn {
        path: PathBuf,
        column: String,
        found: String,
    },

    #[error("{path}, line {line}: {reason}")]
    BadRow {
        path: PathBuf,
        line: u64,
        reason: String,
    },

    #[error("{path}: {reason}")]
    BadFormat { path: PathBuf, reason: String },

    #[error("download of {url} failed: {reason}")]
    Download { url: String, reason: String },

    #[error(
        "download of {url} does not match its published checksum (expected {algorithm} {expected}, got {actual}); nothing was cached. Try again, or check the mirror set by JETSWEEP_OPENML_URL"
    )]
    ChecksumMismatch {
        url: String,
        algorithm: &'static str,
        expected: String,
        actual: String,
    },

    #[error("{0}")]
    Invalid(String),

    #[cfg(feature = "hdf5")]
    #[error("{path}: HDF5: {reason}")]
    Hdf5 { path: PathBuf, reason: String },
}

impl DataError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            source,
        }
    }
}
