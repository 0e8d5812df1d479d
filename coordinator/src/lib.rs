//! jetsweep's coordinator.
//!
//! - [`sweep`]: sweep files (TOML), their validation (through the shared vocabulary of
//!   `jetsweep-proto`), and their expansion into jobs with stable ids.
//! - [`store`]: the SQLite state file, its schema migrations, and the one writer thread that
//!   group-commits every state change.
//! - [`jobs`]: the job lifecycle (submit, lease, report, complete, fail, expire, cancel) over one
//!   store transaction, with `now` as an argument; one file per concern.
//! - [`clock`]: where `now` comes from (the system clock, or a test's hand-moved one).
//! - [`results`]: per grid point mean ± std over seeds, and the best point.
//! - [`datasets`]: the prepared dataset files the coordinator keeps and serves to workers.
//! - [`access`]: which dataset files a submitted sweep may make the coordinator read.
//! - [`server`]: the two gRPC services (glue over the above) and [`server::serve`].
//! - [`cli`]: the `jetsweep` verbs (the binary only parses and dispatches).
//! - [`testkit`]: a coordinator on loopback and fixture sweeps, for tests.
//!
//! Errors: one [`Error`] for the crate, turned into a gRPC status in one place.

pub mod access;
pub mod cli;
pub mod clock;
pub mod datasets;
mod error;
pub mod jobs;
pub mod metrics;
pub mod report;
pub mod results;
pub mod server;
pub mod store;
pub mod sweep;
pub mod testkit;
pub mod web;

pub use error::{DatasetProblem, Error};
