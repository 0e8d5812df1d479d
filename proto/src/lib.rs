//! jetsweep's wire contract: the generated types, clients and servers of `jetsweep.proto` (package
//! `jetsweep.v1`), shared by the coordinator and the workers. Nothing else generates code from it.

pub mod auth;

/// Generated from `jetsweep.proto`.
pub mod v1 {
    tonic::include_proto!("jetsweep.v1");
}

/// The protocol version a worker states at registration; a coordinator refuses any other.
/// Bump it on any change that an older peer would misread.
///
/// 2: epoch reports carry several epochs; completion carries the last epochs and leases the next jobs.
pub const PROTOCOL_VERSION: u32 = 2;
