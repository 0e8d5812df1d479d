//! `WorkerService`: registration, heartbeats, leases, epoch reports, completion, failure, datasets.

use std::pin::Pin;

use jetsweep_proto::PROTOCOL_VERSION;
use jetsweep_proto::v1 as pb;
use jetsweep_proto::v1::worker_service_server::WorkerService;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::{Coordinator, DATASET_CHUNK_BYTES, convert, required};
use crate::jobs;
use crate::sweep::{DEFAULT_LEASE_TIMEOUT, MIN_LEASE_TIMEOUT_S};

/// How often workers heartbeat: a third of the shortest lease a sweep may set, so a lease survives
/// two lost heartbeats.
pub const HEARTBEAT_INTERVAL_MS: u32 = (MIN_LEASE_TIMEOUT_S * 1000.0 / 3.0) as u32;
/// Most jobs one `LeaseJobs` call hands out.
const MAX_LEASE_BATCH: u32 = 64;

pub struct Workers(pub Coordinator);

#[tonic::async_trait]
impl WorkerService for Workers {
    async fn register(
        &self,
        request: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        let r = request.into_inner();
        if r.protocol_version != PROTOCOL_VERSION {
            return Err(Status::failed_precondition(format!(
                "worker speaks protocol version {}, this coordinator speaks {PROTOCOL_VERSION}: run the same jetsweep release on both",
                r.protocol_version
            )));
        }
        required(&r.host, "host")?;
        if r.slots == 0 {
            return Err(Status::invalid_argument("slots must be at least 1"));
        }
        let device = if r.device.is_empty() {
            "cpu".to_string()
        } else {
            r.device
        };
        let worker_id = self
            .0
            .write(move |tx, now| jobs::register_worker(tx, &r.host, &device, r.slots, now))
            .await?;
        Ok(Response::new(pb::RegisterResponse {
            worker_id,
            heartbeat_interval_ms: HEARTBEAT_INTERVAL_MS,
            lease_ttl_ms: DEFAULT_LEASE_TIMEOUT.as_millis() as u32,
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let r = request.into_inner();
        required(&r.worker_id, "worker_id")?;
        let stale = self
            .0
            .write(move |tx, now| jobs::heartbeat(tx, &r.worker_id, &r.lease_ids, now))
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
        let max = r.max_jobs.clamp(1, MAX_LEASE_BATCH);
        let leases = self
            .0
            .write(move |tx, now| lease_to_wire(tx, &r.worker_id, max, now))
            .await?;
        Ok(Response::new(pb::LeaseJobsResponse { leases }))
    }

    async fn report_epoch(
        &self,
        request: Request<pb::ReportEpochRequest>,
    ) -> Result<Response<pb::ReportEpochResponse>, Status> {
        let r = request.into_inner();
        required(&r.lease_id, "lease_id")?;
        if r.epochs.is_empty() {
            return Err(Status::invalid_argument(
                "epochs is empty: report at least one",
            ));
        }
        let epochs: Vec<_> = r.epochs.iter().map(convert::epoch_from_wire).collect();
        let ack = self
            .0
            .write(move |tx, now| jobs::report_epoch(tx, &r.lease_id, &epochs, now))
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
            .map(convert::result_from_wire)
            .ok_or_else(|| Status::invalid_argument("result is required"))?;
        if r.lease_next > 0 {
            required(&r.worker_id, "worker_id (needed with lease_next)")?;
        }
        let epochs: Vec<_> = r.epochs.iter().map(convert::epoch_from_wire).collect();
        let next = r.lease_next.min(MAX_LEASE_BATCH);
        // One commit: the result and the next leases stand or fall together.
        let leases = self
            .0
            .write(move |tx, now| {
                jobs::complete(tx, &r.lease_id, &epochs, &result, now)?;
                if next == 0 {
                    return Ok(Vec::new());
                }
                lease_to_wire(tx, &r.worker_id, next, now)
            })
            .await?;
        Ok(Response::new(pb::CompleteJobResponse { leases }))
    }

    async fn fail_job(
        &self,
        request: Request<pb::FailJobRequest>,
    ) -> Result<Response<pb::FailJobResponse>, Status> {
        let r = request.into_inner();
        required(&r.lease_id, "lease_id")?;
        let requeued = self
            .0
            .write(move |tx, now| jobs::fail(tx, &r.lease_id, &r.error, now))
            .await?;
        Ok(Response::new(pb::FailJobResponse { requeued }))
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
            return Err(Status::invalid_argument(format!(
                "sha256 {sha256:?} is not a 64-digit hex digest"
            )));
        }
        let path = crate::datasets::dataset_path(&self.0.data_dir, &sha256);
        let mut file = tokio::fs::File::open(&path)
            .await
            .map_err(|_| Status::not_found(format!("dataset {sha256} not found")))?;
        let total_bytes = file
            .metadata()
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .len();
        let (out, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            let mut offset = 0u64;
            loop {
                let mut data = vec![0u8; DATASET_CHUNK_BYTES];
                let n = match file.read(&mut data).await {
                    Ok(0) => return,
                    Ok(n) => n,
                    Err(e) => {
                        let _ = out
                            .send(Err(Status::internal(format!(
                                "reading dataset {sha256}: {e}"
                            ))))
                            .await;
                        return;
                    }
                };
                data.truncate(n);
                if out
                    .send(Ok(pb::FetchDatasetResponse {
                        offset,
                        total_bytes,
                        data,
                    }))
                    .await
                    .is_err()
                {
                    return;
                }
                offset += n as u64;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// Leases up to `max` jobs to `worker` and converts them for the wire, each with its dataset.
fn lease_to_wire(
    tx: &rusqlite::Transaction<'_>,
    worker: &str,
    max: u32,
    now: jobs::Millis,
) -> Result<Vec<pb::Lease>, crate::StoreError> {
    let grants = jobs::lease_jobs(tx, worker, max, now)?;
    let mut leases = Vec::with_capacity(grants.len());
    // Grants of one call nearly always share a dataset: look each up once.
    let mut previous: Option<pb::DatasetRef> = None;
    for g in &grants {
        let dataset = match previous.take() {
            Some(d) if d.sha256 == g.job.dataset_sha256 => d,
            _ => convert::dataset(&jobs::dataset_by_sha(tx, &g.job.dataset_sha256)?),
        };
        leases.push(convert::lease(g, dataset.clone()));
        previous = Some(dataset);
    }
    Ok(leases)
}
