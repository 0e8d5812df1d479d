//! The JSC (jet substructure classification) dataset, as jetsweep's trainers see it.
//!
//! A map of the crate:
//! - [`dataset`]: the prepared dataset (train / optional validation / test splits of 16 scaled f32
//!   features and a class label in MASE's order) and its provenance record.
//! - [`source`]: where raw jets come from (OpenML download, a CSV or MASE HDF5 file, the synthetic
//!   generator, or an already prepared `.npy` directory), and the one entry point [`load`].
//! - [`preprocess`]: MASE's recipe: drop duplicate rows, 80/20 split with a fixed seed, standard scaling
//!   fitted on the training part only.
//! - [`cache`]: the compact, versioned, checksummed on-disk format of a prepared dataset.
//! - [`npy`]: the `.npy` exchange layout shared with the PyTorch reference trainer.
//! - [`batch`]: per-epoch shuffles derived from the seed, and batch gathering.
//! - [`rng`]: the one small deterministic random generator everything above uses.

pub mod batch;
pub mod cache;
pub mod csv_source;
pub mod dataset;
mod error;
#[cfg(feature = "hdf5")]
pub mod hdf5_source;
pub mod npy;
pub mod openml;
pub mod preprocess;
pub mod rng;
pub mod source;
pub mod synthetic;

pub use dataset::{
    CLASS_NAMES, FEATURE_NAMES, NUM_CLASSES, NUM_FEATURES, Prepared, Provenance, RawTable, Split,
    ValidationKind,
};
pub use error::DataError;
pub use source::{DatasetSpec, LoadOptions, load};

/// Result type of this crate.
pub type Result<T, E = DataError> = std::result::Result<T, E>;
