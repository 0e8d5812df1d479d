//! jetsweep's coordinator: the domain, the server over it, the client of its wire, and the CLI.
//!
//! The domain (plain synchronous code; lifecycle rules take one store transaction and `now`):
//! - [`sweep`]: sweep files (TOML), their validation (through the shared vocabulary of
//!   `jetsweep-proto`), the drawn points of a `[search]`, and their expansion into jobs with
//!   stable ids.
//! - [`stopping`]: early-stopping decisions (rungs; sync halving, ASHA promotion and the median
//!   rule on seed means) as pure functions.
//! - [`jobs`]: the job lifecycle (submit, lease, report, complete, fail, expire, cancel) and the
//!   queries of the read side; one file per concern.
//! - [`results`]: per grid point mean ± std over seeds, and the best point.
//! - [`store`]: the SQLite state file, its schema migrations, the lock that keeps it to one
//!   coordinator, and the one writer thread that group-commits every state change.
//! - [`datasets`]: the prepared dataset files the coordinator keeps and serves to workers.
//! - [`access`]: which dataset files a submitted sweep may make the coordinator read.
//! - [`credentials`]: who may do what (credentials, roles, the verbs each role may use).
//! - [`clock`]: where `now` comes from (the system clock, or a test's hand-moved one).
//! - [`Error`]: one error for the crate, turned into a gRPC status in one place.
//!
//! The server ([`server`]): the shared state, the two gRPC services and KEDA's scaler
//! (`server::grpc`), the dashboard and its API (`server::web`), `/metrics` (`server::metrics`),
//! and [`server::start`], which `jetsweep serve`, `jetsweep run` and the test kit all start one with.
//!
//! The client ([`client`]): a typed SweepService client that reads every list to its end, the
//! renderings of results, and the report. It reaches the coordinator only through the wire
//! (`.ci/run` checks that it imports nothing of `jobs`, `store` or `server`).
//!
//! - [`cli`]: the `jetsweep` verbs, thin over the client and the server (the binary only parses
//!   and dispatches).
//! - [`testkit`]: a coordinator on loopback and fixture sweeps, for tests.

pub mod access;
pub mod cli;
pub mod client;
pub mod clock;
pub mod credentials;
pub mod datasets;
mod error;
pub mod jobs;
pub mod results;
pub mod server;
pub mod stopping;
pub mod store;
pub mod sweep;
pub mod testkit;

pub use error::{DatasetProblem, Error};
