//! jetsweep's coordinator.
//!
//! - [`sweep`]: sweep files (TOML), their validation, and their expansion into jobs with stable ids.
//!
//! The store, scheduler, gRPC services and the `jetsweep` CLI follow (issue 3).

mod error;
pub mod sweep;

pub use error::SweepError;
