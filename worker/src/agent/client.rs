//! The worker's calls to the coordinator, in one typed client. Each call owns its retry policy:
//! - asking for work, reporting epochs, heartbeats, fetching saved state: retried while the
//!   coordinator is unreachable (it restarts, the network drops), with back-off; any other answer
//!   is final;
//! - completing a job: retried on every error but a refusal no retry can change, because a
//!   finished result must not be lost to a bad moment of the coordinator's;
//! - handing a job back: retried, but only for [`HAND_BACK_GRACE`]: a stopping worker never hangs
//!   on a coordinator that is away (the lease then expires).
//!
//! A call that finds the coordinator no longer knows this worker (NOT_FOUND: it was restarted on a
//! fresh state file) registers again ([`Identity`]) and is asked again where that is safe.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use jetsweep_proto::auth::Channel;
use jetsweep_proto::v1 as pb;
use jetsweep_proto::v1::worker_service_client::WorkerServiceClient;
use tonic::{Code, Status};

use super::identity::Identity;
use crate::WorkerError;

/// Back-off bounds while the coordinator cannot be reached: retry soon, but not in a tight loop.
const BACKOFF_MIN: Duration = Duration::from_millis(200);
pub(super) const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// How long the worker, told to stop at once, waits for the coordinator to take back the jobs it
/// hands back before it exits anyway (their leases then expire): it never hangs on a coordinator
/// that is away.
pub(super) const HAND_BACK_GRACE: Duration = Duration::from_secs(5);

/// What a request for work brought.
#[derive(Debug)]
pub(super) enum Leased {
    /// Packs to train (possibly none: the queue is empty).
    Packs(Vec<pb::LeasePack>),
    /// Refused for now (logged); ask again after a while.
    Later,
}

/// What the coordinator said to an epoch report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reported {
    /// Stored; train on.
    Taken,
    /// Stop the job: its sweep was cancelled, or the report was refused (the lease is no longer
    /// this worker's).
    Stop,
}

/// Epochs not reported yet, and the trial's state after the last of them (if saved).
#[derive(Debug, Default)]
pub(super) struct Unsent {
    pub epochs: Vec<pb::EpochMetrics>,
    pub checkpoint: Option<pb::TrialCheckpoint>,
}

/// The worker's side of `WorkerService`, as this worker (its current id) calls it.
#[derive(Clone)]
pub(super) struct CoordinatorClient {
    rpc: WorkerServiceClient<Channel>,
    identity: Arc<Identity>,
}

impl CoordinatorClient {
    pub fn new(rpc: WorkerServiceClient<Channel>, identity: Arc<Identity>) -> Self {
        CoordinatorClient { rpc, identity }
    }

    /// The generated client, for the dataset stream (which verifies what it fetches itself).
    pub fn rpc(&self) -> WorkerServiceClient<Channel> {
        self.rpc.clone()
    }

    /// This worker's id now (it changes when the worker registers again).
    pub fn worker_id(&self) -> String {
        self.identity.id()
    }

    pub fn heartbeat_interval(&self) -> Duration {
        self.identity.heartbeat_interval
    }

    /// LeaseJobs: up to `slots` packs of up to `pack` jobs each (possibly none). Retried while the
    /// coordinator is unreachable, under one request id (a retry gets the first try's packs); a
    /// worker the coordinator forgot registers again (an error only if that fails) and the caller
    /// asks again.
    pub async fn lease(&self, slots: u32, pack: u32) -> Result<Leased, WorkerError> {
        let request = pb::LeaseJobsRequest {
            worker_id: self.worker_id(),
            slots,
            request_id: next_request_id(),
            pack_size: pack,
        };
        let asked = Instant::now();
        let leased = with_retry("lease", || {
            let mut c = self.rpc.clone();
            let r = request.clone();
            async move { c.lease_jobs(r).await }
        })
        .await;
        match leased {
            Ok(r) => {
                let packs = r.into_inner().packs;
                lease_round_trip("lease_jobs", asked, &packs);
                Ok(Leased::Packs(packs))
            }
            Err(s) if s.code() == Code::NotFound => {
                self.identity.register_again(&request.worker_id).await?;
                Ok(Leased::Packs(Vec::new()))
            }
            Err(s) => {
                tracing::warn!(status = %s.message(), retry_in = ?BACKOFF_MAX, "leasing failed");
                Ok(Leased::Later)
            }
        }
    }

    /// ReportEpoch: `unsent`'s epochs (in order) and the state after the last. Retried while the
    /// coordinator is unreachable; a refusal stops the job.
    pub async fn report(&self, lease_id: &str, unsent: Unsent) -> Reported {
        let request = pb::ReportEpochRequest {
            lease_id: lease_id.to_string(),
            epochs: unsent.epochs,
            worker_id: self.worker_id(),
            checkpoint: unsent.checkpoint,
        };
        let ack = with_retry("report", || {
            let mut c = self.rpc.clone();
            let r = request.clone();
            async move { c.report_epoch(r).await }
        })
        .await;
        match ack {
            Ok(a) if a.get_ref().cancel => Reported::Stop,
            Ok(_) => Reported::Taken,
            Err(s) => {
                tracing::info!(status = %s.message(), "epoch report refused; stopping the job");
                Reported::Stop
            }
        }
    }

    /// CompleteJob: the result and the epochs not reported yet; with `next_pack` set, the slot this
    /// job frees is filled in the same call with a pack of up to that many jobs, which it returns.
    /// Retried on every error but a refusal (then the result is another lease's to give, or the
    /// coordinator cannot take it: logged, nothing returned).
    pub async fn complete(
        &self,
        lease_id: &str,
        result: pb::TrialResult,
        epochs: Vec<pb::EpochMetrics>,
        weights: &crate::train::KeptWeights,
        next_pack: Option<u32>,
    ) -> Vec<pb::LeasePack> {
        let bytes = |w: &Option<jetsweep_proto::weights::ModelWeights>| {
            w.as_ref().map(|w| w.encode()).unwrap_or_default()
        };
        let request = pb::CompleteJobRequest {
            best_weights: bytes(&weights.best),
            last_weights: bytes(&weights.last),
            lease_id: lease_id.to_string(),
            result: Some(result),
            epochs,
            slots: u32::from(next_pack.is_some()),
            worker_id: self.worker_id(),
            request_id: next_request_id(),
            pack_size: next_pack.unwrap_or(1),
        };
        let asked = Instant::now();
        let packs = with_retry_unless_refused("complete", || {
            let mut c = self.rpc.clone();
            let r = request.clone();
            async move { c.complete_job(r).await.map(|r| r.into_inner().packs) }
        })
        .await;
        match packs {
            Ok(packs) => {
                if next_pack.is_some() {
                    lease_round_trip("complete_job", asked, &packs);
                }
                packs
            }
            Err(s) => {
                not_taken(&s);
                Vec::new()
            }
        }
    }

    /// FailJob: the attempt ends with `error`, as `kind` says (FAILED or DIVERGED). Retried while
    /// the coordinator is unreachable.
    pub async fn fail(&self, lease_id: &str, kind: pb::FailureKind, error: &WorkerError) {
        let request = pb::FailJobRequest {
            lease_id: lease_id.to_string(),
            error: error.to_string(),
            worker_id: self.worker_id(),
            kind: kind.into(),
        };
        let failed = with_retry("fail", || {
            let mut c = self.rpc.clone();
            let r = request.clone();
            async move { c.fail_job(r).await }
        })
        .await;
        if let Err(s) = failed {
            not_taken(&s);
        }
    }

    /// Hands a job back (the worker is stopping): the epochs not reported yet go first, with the
    /// state after the last of them (the next attempt resumes there), then FailJob RELEASED. All
    /// within [`HAND_BACK_GRACE`]; what the coordinator has not taken by then is left to expire.
    pub async fn hand_back(&self, lease_id: &str, unsent: Unsent) {
        let request = pb::FailJobRequest {
            lease_id: lease_id.to_string(),
            error: "the worker was stopped".into(),
            worker_id: self.worker_id(),
            kind: pb::FailureKind::Released.into(),
        };
        let handed = tokio::time::timeout(HAND_BACK_GRACE, async {
            if !unsent.epochs.is_empty() && self.report(lease_id, unsent).await == Reported::Stop {
                tracing::info!("last epochs not taken");
            }
            with_retry("hand back", || {
                let mut c = self.rpc.clone();
                let r = request.clone();
                async move { c.fail_job(r).await }
            })
            .await
        })
        .await;
        match handed {
            Ok(Ok(_)) => {}
            Ok(Err(s)) => not_taken(&s),
            Err(_) => {
                tracing::info!("the coordinator did not answer in time; the lease will expire")
            }
        }
    }

    /// FetchCheckpoint: the state `lease` resumes from; `None` (start from epoch 1) when it has
    /// none or the fetch fails. Retried while the coordinator is unreachable.
    pub async fn saved_state(&self, lease: &pb::Lease) -> Option<Vec<u8>> {
        if lease.resume_epoch == 0 {
            return None;
        }
        let request = pb::FetchCheckpointRequest {
            lease_id: lease.lease_id.clone(),
            worker_id: self.worker_id(),
        };
        let fetched = with_retry("fetch checkpoint", || {
            let mut c = self.rpc.clone();
            let r = request.clone();
            async move { c.fetch_checkpoint(r).await }
        })
        .await;
        match fetched {
            Ok(c) => Some(c.into_inner().state),
            Err(s) => {
                tracing::warn!(status = %s.message(), "saved state not fetched; starting from epoch 1");
                None
            }
        }
    }

    /// Heartbeat: extends the leases named; returns those no longer current (stop their jobs).
    /// Not retried: the next tick is the retry. A worker the coordinator forgot registers again.
    pub async fn heartbeat(&self, lease_ids: Vec<String>) -> Vec<String> {
        let worker_id = self.worker_id();
        let beat = self
            .rpc
            .clone()
            .heartbeat(pb::HeartbeatRequest {
                worker_id: worker_id.clone(),
                lease_ids,
                leaving: false,
            })
            .await;
        match beat {
            Ok(r) => r.into_inner().stale_lease_ids,
            Err(s) if s.code() == Code::NotFound => {
                if let Err(e) = self.identity.register_again(&worker_id).await {
                    tracing::warn!(error = %e, "registering again failed; the next heartbeat retries");
                }
                Vec::new()
            }
            Err(s) => {
                tracing::warn!(worker = %jetsweep_proto::worker_id::worker_name(&worker_id), status = %s.message(), "heartbeat failed");
                Vec::new()
            }
        }
    }

    /// Goodbye: one heartbeat saying this worker exits cleanly, so lists show it as left rather
    /// than gone. Bounded by `wait`; a coordinator that does not answer in time sees it go silent.
    pub async fn leave(&self, wait: Duration) {
        let worker_id = self.worker_id();
        let mut rpc = self.rpc.clone();
        let goodbye = rpc.heartbeat(pb::HeartbeatRequest {
            worker_id: worker_id.clone(),
            lease_ids: Vec::new(),
            leaving: true,
        });
        match tokio::time::timeout(wait, goodbye).await {
            Ok(Ok(_)) => {
                tracing::info!(worker = %jetsweep_proto::worker_id::worker_name(&worker_id), "said goodbye")
            }
            Ok(Err(s)) => tracing::info!(status = %s.message(), "goodbye not taken"),
            Err(_) => tracing::info!(?wait, "goodbye unanswered"),
        }
    }
}

/// The coordinator did not take a job's outcome: a stale lease means another worker finished or
/// took the job, so there is nothing to do.
fn not_taken(s: &Status) {
    tracing::info!(status = %s.message(), "the coordinator did not take the outcome");
}

/// Logs (at debug level) how long a call that asks for work took, and how many packs and leases it
/// brought: the lease latency a deployment's network adds
/// (`JETSWEEP_LOG=jetsweep_worker::agent=debug`).
fn lease_round_trip(rpc: &'static str, asked: Instant, packs: &[pb::LeasePack]) {
    tracing::debug!(
        rpc,
        packs = packs.len(),
        leases = packs.iter().map(|p| p.leases.len()).sum::<usize>(),
        took_us = asked.elapsed().as_micros() as u64,
        "lease round trip"
    );
}

/// A fresh id for a request that may be retried: the coordinator answers every retry of it with
/// the grant of the first try. Unique within this process (the coordinator keys it by worker id).
fn next_request_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("r{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Retries `f` while the coordinator is unreachable, with exponential back-off; other errors return.
pub(super) async fn with_retry<T, F, Fut>(what: &str, f: F) -> Result<T, Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Status>>,
{
    retry_while(what, unreachable, f).await
}

/// Retries `f` on every error but a refusal that no retry can change (a stale lease, a request the
/// coordinator finds invalid, a wrong token): for a finished result, which must not be dropped
/// because the coordinator had a bad moment.
async fn with_retry_unless_refused<T, F, Fut>(what: &str, f: F) -> Result<T, Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Status>>,
{
    retry_while(
        what,
        |s| {
            !matches!(
                s.code(),
                Code::FailedPrecondition
                    | Code::InvalidArgument
                    | Code::Unauthenticated
                    | Code::PermissionDenied
                    | Code::NotFound
                    | Code::OutOfRange
            )
        },
        f,
    )
    .await
}

/// The coordinator (or the way to it) is down: try again later.
fn unreachable(s: &Status) -> bool {
    matches!(
        s.code(),
        Code::Unavailable | Code::Unknown | Code::Cancelled
    )
}

async fn retry_while<T, F, Fut>(
    what: &str,
    retryable: impl Fn(&Status) -> bool,
    mut f: F,
) -> Result<T, Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Status>>,
{
    let mut delay = BACKOFF_MIN;
    loop {
        match f().await {
            Err(s) if retryable(&s) => {
                tracing::warn!(call = what, code = ?s.code(), status = %s.message(), retry_in = ?delay, "coordinator call failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(BACKOFF_MAX);
            }
            other => return other,
        }
    }
}
