//! KEDA's external scaler, served by the coordinator so a worker Deployment scales with the queue
//! (`jetsweep serve --scaler-listen ADDR`; the contract is `proto/externalscaler.proto`).
//!
//! The metric is the work before the cluster: queued + running jobs, over every sweep. Its target
//! per replica is the jobs one worker pod runs at once, from the ScaledObject's metadata:
//! `slotsPerWorker` (its `--slots`, default 1) × `jobsPerSlot` (default 1; a worker that trains
//! packs runs up to its `--pack` jobs per slot). KEDA then asks for ceil(work / target) replicas,
//! and for none once the queue is empty and nothing runs (IsActive false). With metadata
//! `device` (`cpu` or `cuda`) it counts only the jobs such workers may take (their sweep's
//! `device` is that class or `any`), so a CPU and a GPU worker pool each scale on their own queue.
//!
//! KEDA cannot send the coordinator's token, so this service answers without one, on its own
//! listen address: it tells only two counts and changes nothing.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use jetsweep_proto::externalscaler as ks;
use jetsweep_proto::externalscaler::external_scaler_server::ExternalScaler;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::server::Coordinator;
use crate::sweep::Device;

/// The one metric's name.
pub const METRIC: &str = "jetsweep-open-jobs";

/// Largest `slotsPerWorker` × `jobsPerSlot` taken (a worker's slots × its largest pack).
const MAX_TARGET: u64 = 1 << 20;

/// Most StreamIsActive streams open at once (KEDA opens one per ScaledObject).
const MAX_STREAMS: usize = 16;

/// A stream re-reads the counts after a commit, at most once per STREAM_GAP (counting a long
/// queue takes a while, and commits come by the thousand per second), and at least every
/// STREAM_POLL.
const STREAM_GAP: Duration = Duration::from_secs(1);
const STREAM_POLL: Duration = Duration::from_secs(5);

/// The scaler over a coordinator's store.
#[derive(Clone)]
pub struct Scaler {
    coordinator: Coordinator,
    streams: Arc<tokio::sync::Semaphore>,
}

impl Scaler {
    pub fn new(coordinator: Coordinator) -> Self {
        Scaler {
            coordinator,
            streams: Arc::new(tokio::sync::Semaphore::new(MAX_STREAMS)),
        }
    }

    /// Queued + running jobs now that workers of class `device` may take (`None`: all).
    async fn open_jobs(&self, device: Option<Device>) -> Result<u64, Status> {
        let (queued, running) = self
            .coordinator
            .read(move |tx| crate::jobs::open_work(tx, device))
            .await?;
        Ok(queued + running)
    }
}

/// The device class a ScaledObject scales workers of (metadata `device`: `cpu` or `cuda`; absent:
/// every job counts). Errors name the value.
pub fn device_of(object: &ks::ScaledObjectRef) -> Result<Option<Device>, Status> {
    match object.scaler_metadata.get("device").map(|v| v.trim()) {
        None | Some("") | Some("any") => Ok(None),
        Some(v) => match Device::parse(v) {
            Some(d) => Ok(Some(d)),
            None => Err(Status::invalid_argument(format!(
                "scaler metadata device = {:?}: cpu or cuda (the class of the workers this ScaledObject scales), or leave it out to count every job",
                v.chars().take(40).collect::<String>()
            ))),
        },
    }
}

/// Jobs one worker pod runs at once, from the ScaledObject's metadata. Errors: a value that is not
/// a whole number from 1, or a target above [`MAX_TARGET`], naming the key and value.
pub fn target_per_worker(object: &ks::ScaledObjectRef) -> Result<u64, Status> {
    let whole = |key: &str| -> Result<u64, Status> {
        match object.scaler_metadata.get(key) {
            None => Ok(1),
            Some(v) => v.trim().parse::<u64>().ok().filter(|n| *n >= 1).ok_or_else(|| {
                let shown: String = v.chars().take(40).collect();
                Status::invalid_argument(format!(
                    "scaler metadata {key} = {shown:?}: a whole number from 1 (the worker's --slots, or jobs per slot)"
                ))
            }),
        }
    };
    let target = whole("slotsPerWorker")?.saturating_mul(whole("jobsPerSlot")?);
    if target > MAX_TARGET {
        return Err(Status::invalid_argument(format!(
            "scaler metadata slotsPerWorker × jobsPerSlot = {target}: at most {MAX_TARGET}"
        )));
    }
    Ok(target)
}

#[tonic::async_trait]
impl ExternalScaler for Scaler {
    async fn is_active(
        &self,
        request: Request<ks::ScaledObjectRef>,
    ) -> Result<Response<ks::IsActiveResponse>, Status> {
        target_per_worker(request.get_ref())?;
        let device = device_of(request.get_ref())?;
        let result = self.open_jobs(device).await? > 0;
        Ok(Response::new(ks::IsActiveResponse { result }))
    }

    type StreamIsActiveStream =
        Pin<Box<dyn Stream<Item = Result<ks::IsActiveResponse, Status>> + Send + 'static>>;

    /// Says whether there is work now, then again each time that changes.
    async fn stream_is_active(
        &self,
        request: Request<ks::ScaledObjectRef>,
    ) -> Result<Response<Self::StreamIsActiveStream>, Status> {
        target_per_worker(request.get_ref())?;
        let device = device_of(request.get_ref())?;
        let permit = self.streams.clone().try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(format!(
                "{MAX_STREAMS} StreamIsActive streams are open already"
            ))
        })?;
        let scaler = self.clone();
        let mut commits = self.coordinator.commits();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            let _permit = permit;
            let mut said = None;
            loop {
                let active = match scaler.open_jobs(device).await {
                    Ok(n) => n > 0,
                    Err(status) => {
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                };
                if said != Some(active) {
                    if tx
                        .send(Ok(ks::IsActiveResponse { result: active }))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    said = Some(active);
                }
                tokio::select! {
                    _ = tokio::time::sleep(STREAM_GAP) => {}
                    _ = tx.closed() => return,
                }
                tokio::select! {
                    changed = commits.changed() => if changed.is_err() { return },
                    _ = tokio::time::sleep(STREAM_POLL) => {}
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn get_metric_spec(
        &self,
        request: Request<ks::ScaledObjectRef>,
    ) -> Result<Response<ks::GetMetricSpecResponse>, Status> {
        let target = target_per_worker(request.get_ref())?;
        Ok(Response::new(ks::GetMetricSpecResponse {
            metric_specs: vec![ks::MetricSpec {
                metric_name: METRIC.into(),
                target_size: target as i64,
                target_size_float: target as f64,
            }],
        }))
    }

    async fn get_metrics(
        &self,
        request: Request<ks::GetMetricsRequest>,
    ) -> Result<Response<ks::GetMetricsResponse>, Status> {
        let request = request.into_inner();
        let mut device = None;
        if let Some(object) = &request.scaled_object_ref {
            target_per_worker(object)?;
            device = device_of(object)?;
        }
        if !request.metric_name.is_empty() && request.metric_name != METRIC {
            let shown: String = request.metric_name.chars().take(80).collect();
            return Err(Status::not_found(format!(
                "no metric {shown:?}: this scaler has one, {METRIC:?}"
            )));
        }
        let open = self.open_jobs(device).await?;
        Ok(Response::new(ks::GetMetricsResponse {
            metric_values: vec![ks::MetricValue {
                metric_name: METRIC.into(),
                metric_value: open as i64,
                metric_value_float: open as f64,
            }],
        }))
    }
}
