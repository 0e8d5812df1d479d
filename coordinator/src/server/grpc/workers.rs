//! `WorkerService`: registration, heartbeats, leases, epoch reports, completion, failure, datasets.

use std::pin::Pin;

use jetsweep_proto::PROTOCOL_VERSION;
use jetsweep_proto::v1 as pb;
use jetsweep_proto::v1::worker_service_server::WorkerService;
use jetsweep_proto::worker_id::worker_name;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use jetsweep_proto::limits::{
    DATASET_CHUNK_BYTES, HEARTBEAT_INTERVAL, MAX_PACK, MAX_SLOTS_PER_CALL, MIN_LEASE,
};
use jetsweep_proto::metrics::{EpochMetrics, TrialResult};

use super::{required, views};
use crate::server::Coordinator;
use crate::{Error, jobs};

pub struct Workers(pub Coordinator);

/// Most jobs one worker may run at once (its `slots`), and so most leases one heartbeat names.
const MAX_SLOTS: u32 = 1024;

/// A dataset download whose reader takes no chunk for this long is ended.
const FETCH_STALL: std::time::Duration = std::time::Duration::from_secs(60);

/// How much of a worker's error message is kept: enough for any real error, and a bound on what
/// one request can make the store keep.
const MAX_ERROR_CHARS: usize = 4096;

/// Epochs from the wire, each checked: a number no epoch measures is refused before anything is
/// stored, so a sweep always reads back.
fn checked_epochs(epochs: &[pb::EpochMetrics]) -> Result<Vec<EpochMetrics>, Error> {
    epochs
        .iter()
        .map(|e| {
            let metrics = EpochMetrics::from(e);
            metrics.check().map(|_| metrics).map_err(Error::from)
        })
        .collect()
}

#[tonic::async_trait]
impl WorkerService for Workers {
    async fn register(
        &self,
        request: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        let r = request.into_inner();
        if r.protocol_version != PROTOCOL_VERSION {
            return Err(Error::Protocol {
                theirs: r.protocol_version,
                ours: PROTOCOL_VERSION,
            }
            .into());
        }
        required(&r.host, "host")?;
        if r.slots == 0 || r.slots > MAX_SLOTS {
            return Err(Error::InvalidRequest(format!(
                "slots = {}: give 1 to {MAX_SLOTS}",
                r.slots
            ))
            .into());
        }
        let device = if r.device.is_empty() {
            "cpu".to_string()
        } else {
            required(&r.device, "device")?;
            r.device
        };
        let (host, slots) = (r.host.clone(), r.slots);
        let worker_id = self
            .0
            .write(move |tx, now| jobs::register_worker(tx, &r.host, &device, r.slots, now))
            .await?;
        tracing::info!(worker = %worker_name(&worker_id), host = %host, slots, "worker registered");
        Ok(Response::new(pb::RegisterResponse {
            worker_id,
            heartbeat_interval_ms: HEARTBEAT_INTERVAL.as_millis() as u32,
            lease_ttl_ms: MIN_LEASE.as_millis() as u32,
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let r = request.into_inner();
        required(&r.worker_id, "worker_id")?;
        if r.lease_ids.len() > MAX_SLOTS as usize {
            return Err(Error::InvalidRequest(format!(
                "{} lease_ids: a worker holds at most {MAX_SLOTS}",
                r.lease_ids.len()
            ))
            .into());
        }
        for lease in &r.lease_ids {
            required(lease, "lease_ids[]")?;
        }
        let stale = self
            .0
            .write(move |tx, now| jobs::heartbeat(tx, &r.worker_id, &r.lease_ids, r.leaving, now))
            .await?;
        Ok(Response::new(pb::HeartbeatResponse {
            stale_lease_ids: stale,
        }))
    }

    async fn lease_jobs(
        &self,
        request: Request<pb::LeaseJobsRequest>,
    ) -> Result<Response<pb::LeaseJobsResponse>, Status> {
        let r = request.into_inner();
        required(&r.worker_id, "worker_id")?;
        let ask = jobs::Ask {
            slots: r.slots.clamp(1, MAX_SLOTS_PER_CALL),
            pack: r.pack_size.clamp(1, MAX_PACK),
        };
        let packs = self
            .0
            .write(move |tx, now| lease_to_wire(tx, &r.worker_id, &r.request_id, ask, now))
            .await?;
        Ok(Response::new(pb::LeaseJobsResponse { packs }))
    }

    async fn report_epoch(
        &self,
        request: Request<pb::ReportEpochRequest>,
    ) -> Result<Response<pb::ReportEpochResponse>, Status> {
        let r = request.into_inner();
        required(&r.lease_id, "lease_id")?;
        required(&r.worker_id, "worker_id")?;
        if r.epochs.is_empty() {
            return Err(
                Error::InvalidRequest("epochs is empty: report at least one".into()).into(),
            );
        }
        let epochs = checked_epochs(&r.epochs)?;
        let checkpoint = r.checkpoint.map(|c| jobs::Checkpoint {
            epoch: c.epoch,
            state: c.state,
        });
        // The size is checked before the request waits for the writer.
        if let Some(c) = &checkpoint {
            c.check_size()?;
        }
        let ack = self
            .0
            .write(move |tx, now| {
                jobs::report_epoch(
                    tx,
                    &r.lease_id,
                    &r.worker_id,
                    &epochs,
                    checkpoint.as_ref(),
                    now,
                )
            })
            .await?;
        Ok(Response::new(pb::ReportEpochResponse {
            cancel: ack.cancel,
            expires_unix_ms: ack.expires_at,
        }))
    }

    async fn complete_job(
        &self,
        request: Request<pb::CompleteJobRequest>,
    ) -> Result<Response<pb::CompleteJobResponse>, Status> {
        let r = request.into_inner();
        required(&r.lease_id, "lease_id")?;
        let result = r
            .result
            .as_ref()
            .map(TrialResult::from)
            .ok_or_else(|| Error::InvalidRequest("result is required".into()))?;
        result.check().map_err(Error::from)?;
        required(&r.worker_id, "worker_id")?;
        let epochs = checked_epochs(&r.epochs)?;
        let next = jobs::Ask {
            slots: r.slots.min(MAX_SLOTS_PER_CALL),
            pack: r.pack_size.clamp(1, MAX_PACK),
        };
        let lease_id = r.lease_id.clone();
        let test_acc = result.test_acc;
        // One commit: the result, and the next leases. A worker the coordinator no longer knows
        // (it was restarted on a fresh state file) is refused before anything is written, so the
        // result is kept and no lease granted; the worker registers again. (A savepoint around the
        // leasing would cover every failure, but its page copies were a fifth of the writer's time;
        // leasing's other failures are the store's own, which would fail the commit anyway.)
        let packs = self
            .0
            .write(move |tx, now| {
                jobs::complete(tx, &r.lease_id, &r.worker_id, &epochs, &result, now)?;
                jobs::models::keep_weights(tx, &r.lease_id, &r.best_weights, &r.last_weights)?;
                if next.slots == 0 {
                    return Ok(Vec::new());
                }
                match lease_to_wire(tx, &r.worker_id, &r.request_id, next, now) {
                    Err(Error::NotFound(what)) => {
                        tracing::warn!(worker = %worker_name(&r.worker_id), %what, "result stored; no next job for a worker this coordinator does not know");
                        Ok(Vec::new())
                    }
                    other => other,
                }
            })
            .await
            .inspect_err(
                |e| tracing::debug!(lease = %lease_id, error = %e, "completion refused"),
            )?;
        tracing::debug!(job = %jobs::job_of_lease(&lease_id), lease = %lease_id, test_acc, "job done");
        Ok(Response::new(pb::CompleteJobResponse { packs }))
    }

    async fn fail_job(
        &self,
        request: Request<pb::FailJobRequest>,
    ) -> Result<Response<pb::FailJobResponse>, Status> {
        let r = request.into_inner();
        required(&r.lease_id, "lease_id")?;
        required(&r.worker_id, "worker_id")?;
        let kind = match pb::FailureKind::try_from(r.kind) {
            Ok(pb::FailureKind::Unspecified) | Err(_) => {
                return Err(Error::InvalidRequest(format!(
                    "kind = {}: say why the attempt ends (FAILURE_KIND_FAILED, _DIVERGED or _RELEASED)",
                    r.kind
                ))
                .into());
            }
            Ok(kind) => kind,
        };
        let error = super::printable_text(&r.error, MAX_ERROR_CHARS);
        let lease_id = r.lease_id.clone();
        let why = error.clone();
        let requeued = self
            .0
            .write(move |tx, now| match kind {
                pb::FailureKind::Released => {
                    jobs::release(tx, &r.lease_id, &r.worker_id, &why, now)
                }
                pb::FailureKind::Diverged => {
                    jobs::fail(tx, &r.lease_id, &r.worker_id, &why, false, now)
                }
                _ => jobs::fail(tx, &r.lease_id, &r.worker_id, &why, true, now),
            })
            .await?;
        tracing::info!(job = %jobs::job_of_lease(&lease_id), lease = %lease_id, requeued, kind = kind.as_str_name(), error = %error, "job attempt ended without a result");
        Ok(Response::new(pb::FailJobResponse { requeued }))
    }

    async fn fetch_checkpoint(
        &self,
        request: Request<pb::FetchCheckpointRequest>,
    ) -> Result<Response<pb::TrialCheckpoint>, Status> {
        let r = request.into_inner();
        required(&r.lease_id, "lease_id")?;
        required(&r.worker_id, "worker_id")?;
        let checkpoint = self
            .0
            .write(move |tx, now| jobs::fetch_checkpoint(tx, &r.lease_id, &r.worker_id, now))
            .await?;
        Ok(Response::new(pb::TrialCheckpoint {
            epoch: checkpoint.epoch,
            state: checkpoint.state,
        }))
    }

    type FetchDatasetStream =
        Pin<Box<dyn Stream<Item = Result<pb::FetchDatasetResponse, Status>> + Send>>;

    async fn fetch_dataset(
        &self,
        request: Request<pb::FetchDatasetRequest>,
    ) -> Result<Response<Self::FetchDatasetStream>, Status> {
        let sha256 = request.into_inner().sha256;
        // Only a hex digest names a file: nothing else reaches the filesystem.
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::InvalidRequest(format!(
                "sha256 {:?} is not a 64-digit hex digest",
                sha256.chars().take(80).collect::<String>()
            ))
            .into());
        }
        let permit = self.0.dataset_fetch_permit().ok_or_else(|| {
            Error::Unavailable(format!(
                "{} dataset downloads are under way; retry shortly",
                crate::server::MAX_DATASET_FETCHES
            ))
        })?;
        let path = crate::datasets::dataset_path(&self.0.data_dir, &sha256);
        let mut file = tokio::fs::File::open(&path)
            .await
            .map_err(|_| Error::NotFound(format!("dataset {sha256}")))?;
        let total_bytes = file
            .metadata()
            .await
            .map_err(|e| Error::Unavailable(format!("dataset {sha256}: {e}")))?
            .len();
        tracing::debug!(dataset = %sha256, bytes = total_bytes, "dataset fetch");
        let (out, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            let _permit = permit;
            let mut offset = 0u64;
            loop {
                let mut data = vec![0u8; DATASET_CHUNK_BYTES];
                let n = match file.read(&mut data).await {
                    Ok(0) => return,
                    Ok(n) => n,
                    Err(e) => {
                        let _ = out
                            .send(Err(Error::Unavailable(format!(
                                "reading dataset {sha256}: {e}"
                            ))
                            .into()))
                            .await;
                        return;
                    }
                };
                data.truncate(n);
                // A reader that takes nothing for a minute has gone or stalled: its slot and
                // buffers go back.
                let sent = tokio::time::timeout(
                    FETCH_STALL,
                    out.send(Ok(pb::FetchDatasetResponse {
                        offset,
                        total_bytes,
                        data,
                    })),
                )
                .await;
                if !matches!(sent, Ok(Ok(()))) {
                    tracing::debug!(dataset = %sha256, offset, "dataset fetch ended: the reader went away or stalled");
                    return;
                }
                offset += n as u64;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// Fills the slots `ask` asks for with packs for `worker`, for `request_id` (a retry gets the
/// first try's packs), and converts them for the wire, each lease with its dataset and the sweep
/// it belongs to.
fn lease_to_wire(
    tx: &rusqlite::Transaction<'_>,
    worker: &str,
    request_id: &str,
    ask: jobs::Ask,
    now: jobs::Millis,
) -> Result<Vec<pb::LeasePack>, Error> {
    let packs = jobs::lease_for_request(tx, worker, request_id, ask, now)?;
    // Grants of one call nearly always share a dataset: look each up once.
    let mut previous: Option<pb::DatasetRef> = None;
    let mut wire = Vec::with_capacity(packs.len());
    for pack in &packs {
        let mut leases = Vec::with_capacity(pack.len());
        for g in pack {
            let dataset = match previous.take() {
                Some(d) if d.sha256 == g.job.dataset_sha256 => d,
                _ => (&jobs::dataset_by_sha(tx, &g.job.dataset_sha256)?).into(),
            };
            let sweep = g.job.sweep_id.clone().unwrap_or_default();
            tracing::debug!(sweep = %sweep, job = %g.job.id, lease = %g.lease_id, worker = %worker_name(worker), attempt = g.attempt, pack = leases.len() + 1, "job leased");
            leases.push(views::lease(g, dataset.clone(), sweep));
            previous = Some(dataset);
        }
        wire.push(pb::LeasePack { leases });
    }
    Ok(wire)
}
