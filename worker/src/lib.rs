//! jetsweep's worker side: the JSC models and the trainer that every worker runs.
//!
//! - [`model`]: the JSC models as burn modules (one skeleton, many shapes).
//! - [`train`]: MASE's training recipe: the epoch loop, optimizer, schedule, metrics.
//! - [`device`]: choosing CPU or CUDA, once, at the edge.
//! - [`agent`]: `jetsweep-worker --coordinator URL`: joins a coordinator and runs its jobs.
//! - [`cli`]: the `jetsweep-worker` subcommands (the binary only parses and dispatches).

pub mod agent;
pub mod cli;
pub mod device;
mod error;
pub mod model;
pub mod train;

pub use error::WorkerError;
