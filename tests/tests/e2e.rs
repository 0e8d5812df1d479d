//! End-to-end tests: jetsweep's binaries run as real processes. One test binary for the whole
//! workspace, so the heavy dependencies link once.

mod cluster;
mod dashboard;
mod metrics;
mod models;
mod report;
mod resume;
mod roles;
mod search;
mod stopping;
mod support;
mod tls;
mod worker_cli;
