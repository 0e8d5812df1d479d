//! jetsweep's coordinator.
//!
//! - [`sweep`]: sweep files (TOML), their validation, and their expansion into jobs with stable ids.
//! - [`store`]: the SQLite state file and its schema migrations.
//! - [`jobs`]: the job lifecycle (submit, lease, report, complete, fail, expire, cancel) over one
//!   store transaction, with `now` as an argument.
//! - [`results`]: per grid point mean ± std over seeds, and the best point.
//! - [`datasets`]: the prepared dataset files the coordinator keeps and serves to workers.
//! - [`server`]: the two gRPC services (glue over the above) and [`server::serve`].
//!
//! - [`cli`]: the `jetsweep` verbs (the binary only parses and dispatches).

pub mod cli;
pub mod datasets;
mod error;
pub mod jobs;
pub mod results;
pub mod server;
pub mod store;
pub mod sweep;

pub use error::{StoreError, SweepError};
