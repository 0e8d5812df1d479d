//! The timing and size rules both ends obey, in one place. The coordinator enforces them; the
//! worker and the CLI configure their clients from them.

use std::time::Duration;

/// How often a worker heartbeats: often enough that a lease of [`MIN_LEASE`] survives two lost
/// heartbeats, rarely enough that 1,000 workers cost the coordinator 1,000 small commits a second
/// at most (and in practice one group commit).
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);

/// A worker silent this long (ten heartbeats) is shown as gone.
pub const GONE_AFTER: Duration = Duration::from_secs(10 * HEARTBEAT_INTERVAL.as_secs());

/// The shortest lease a sweep may set: three heartbeats, so one late heartbeat never costs a job.
pub const MIN_LEASE: Duration = Duration::from_secs(3 * HEARTBEAT_INTERVAL.as_secs());

/// The lease a sweep gets when it does not say: long enough for a few missed heartbeats (a busy
/// machine, a garbage-collecting network), short enough that a dead worker's job is back in the
/// queue within a minute.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// The longest lease a sweep may set: a day. A longer one would leave a dead worker's job
/// stranded for longer than anyone waits for a sweep.
pub const MAX_LEASE: Duration = Duration::from_secs(86_400);

/// Largest gRPC message either end accepts or sends. Sweep files and reports are small; dataset
/// chunks are [`DATASET_CHUNK_BYTES`]; a results page stays under it by paging.
pub const MAX_MESSAGE_BYTES: usize = 4 << 20;

/// Dataset files are streamed in chunks of this size (well inside [`MAX_MESSAGE_BYTES`]).
pub const DATASET_CHUNK_BYTES: usize = 1 << 20;

/// A worker gone this long (and holding no lease) is dropped from the registry; if it comes back
/// it registers again.
pub const FORGET_AFTER: Duration = Duration::from_secs(3600);

/// Largest trial state a worker sends with an epoch report (to resume the trial elsewhere) and the
/// coordinator keeps: ~170k parameters' worth. Larger models run without resuming.
pub const MAX_CHECKPOINT_BYTES: usize = 2 << 20;

/// Most slots one lease call fills (LeaseJobs and CompleteJob `slots`); each slot is one pack.
pub const MAX_SLOTS_PER_CALL: u32 = 64;

/// Most list entries one page of ListSweeps holds.
pub const MAX_SWEEPS_PAGE: u32 = 1000;

/// The most jobs one pack may hold (`pack_size`), and the most leases one lease call grants in
/// all, whatever its slots: a GPU trains hundreds of jsc-tiny trials at once; 1,024 leases are a few
/// hundred KB, well under the message limit.
pub const MAX_PACK: u32 = 1024;

/// How long a client waits for a TCP connection to the coordinator before calling it unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

// The rules above hold by construction; a change that breaks one fails the build.
const _: () = assert!(MIN_LEASE.as_millis() >= 3 * HEARTBEAT_INTERVAL.as_millis());
const _: () = assert!(DEFAULT_LEASE.as_secs() >= MIN_LEASE.as_secs());
const _: () = assert!(DATASET_CHUNK_BYTES + 1024 < MAX_MESSAGE_BYTES);
const _: () = assert!(FORGET_AFTER.as_secs() > GONE_AFTER.as_secs());
const _: () = assert!(MAX_CHECKPOINT_BYTES + (1 << 20) < MAX_MESSAGE_BYTES);
