//! The real server on 127.0.0.1:0, called through the generated clients; one file per topic,
//! the shared helpers here.

use std::time::Duration;

use jetsweep_proto::PROTOCOL_VERSION;
use jetsweep_proto::limits::{HEARTBEAT_INTERVAL, MAX_MESSAGE_BYTES, MIN_LEASE};
use jetsweep_proto::v1 as pb;
use jetsweep_proto::worker_id::worker_name;
use tonic::Code;

use crate::testkit::{TestCoordinator, sweeps};

pub(super) const SWEEP: &str = sweeps::TINY;

/// A coordinator on loopback over a state file in its own folder (kept as long as the test runs).
pub(super) async fn start() -> (TestCoordinator, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (TestCoordinator::start(dir.path()).await, dir)
}

pub(super) fn epoch(n: u32) -> pb::EpochMetrics {
    pb::EpochMetrics {
        epoch: n,
        test_acc: 0.5,
        ..Default::default()
    }
}

mod leases;
mod ops;
mod reads;
mod wire;
