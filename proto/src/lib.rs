//! jetsweep's contract: what the coordinator and its workers say to each other, and the words both
//! sides say it in. No burn and no SQLite here: the coordinator builds on this crate without the ML
//! stack, and the worker without the store.
//!
//! The wire:
//! - [`v1`]: the types, clients and servers generated from `jetsweep.proto` (nothing else runs
//!   code generation), and [`PROTOCOL_VERSION`]; [`externalscaler`]: KEDA's scaler contract.
//! - [`limits`]: heartbeat period, lease bounds, message sizes: the timing and size rules both ends obey.
//! - [`convert`]: `From`/`TryFrom` between the vocabulary below and the wire types.
//!
//! The vocabulary:
//! - [`model`]: the model-name grammar (`jsc-tiny`, `mlp:64,32`) and parameter counts.
//! - [`trial`]: a trial's hyperparameters, MASE's defaults, and their one validation.
//! - [`dataset`]: how a prepared dataset is named (by its content hash).
//! - [`metrics`]: what an epoch measured, and a trial's result.
//! - [`state`]: the names of a job's states.
//!
//! What every process shares:
//! - [`auth`]: the token both services require; [`client`]: connecting to a coordinator.
//! - [`logging`]: tracing to stderr, text or JSON; [`shutdown`]: the stop signal; [`sync`]: the
//!   one policy for poisoned locks (recover).

pub mod auth;
pub mod client;
pub mod convert;
pub mod dataset;
mod error;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod shutdown;
pub mod state;
pub mod sync;
pub mod trial;
pub mod weights;
pub mod worker_id;

pub use error::Error;

/// Generated from `jetsweep.proto`.
pub mod v1 {
    tonic::include_proto!("jetsweep.v1");

    /// `jetsweep.proto`'s encoded file descriptors: what the coordinator's gRPC server
    /// reflection describes.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/jetsweep_descriptor.bin"));
}

/// Generated from `externalscaler.proto`: KEDA's external scaler contract, which the coordinator
/// serves so Kubernetes can scale workers with the queue.
pub mod externalscaler {
    tonic::include_proto!("externalscaler");
}

/// The protocol version: a worker states it at registration, and every call of either service
/// carries it as [`auth::PROTOCOL_KEY`] metadata; a coordinator refuses any other. Bump it on any
/// change that an older peer would misread.
///
/// 2: epoch reports carry several epochs; completion carries the last epochs and leases the next jobs.
/// 3: reports, completions and failures name the worker (a lease answers only to its own worker);
///    requests carry ids so a retry gets the first grant; failures can be final (a divergence).
/// 4: leases come as packs; `slots` is the one name of a slot; a failure's kind is an enum; what was
///    not measured is an unset optional (never NaN); ListSweeps is paged; every call carries the
///    version.
/// 5: a trial carries its weight decay (an older worker would train without it); a submission's
///    reply carries warnings.
pub const PROTOCOL_VERSION: u32 = 5;
