//! jetsweep's coordinator.
//!
//! - [`sweep`]: sweep files (TOML), their validation, and their expansion into jobs with stable ids.
//! - [`store`]: the SQLite state file and its schema migrations.
//!
//! The store, scheduler, gRPC services and the `jetsweep` CLI follow (issue 3).

mod error;
pub mod store;
pub mod sweep;

pub use error::{StoreError, SweepError};
