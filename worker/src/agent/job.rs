//! Running one leased job: dataset, training on a blocking thread, epoch reports, then the result or
//! the error. Reports on a stale lease stop the job (another worker owns it now).
//!
//! Round trips are kept few, because a tiny trial's epochs take milliseconds: epochs that pile up
//! while a report is in flight go in the next report together, the last epoch rides with the
//! completion, and the completion asks for the worker's next job in the same call.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use jetsweep_proto::auth::Channel;
use jetsweep_proto::v1 as pb;
use jetsweep_proto::v1::worker_service_client::WorkerServiceClient;
use tokio::sync::mpsc;

use super::datasets::Datasets;
use super::with_retry;
use crate::device::{self, DeviceChoice};
use crate::model::Architecture;
use crate::train::{Progress, TrainConfig};

/// Who is asking, and whether it wants another job when this one completes.
pub struct NextWork {
    pub worker_id: String,
    /// Set when the agent is stopping: complete without leasing more.
    pub stopping: Arc<AtomicBool>,
}

/// Runs one job to its end; never panics on a bad job: errors are reported as the job's failure.
/// Returns the leases granted with its completion (the worker's next jobs).
pub async fn run(
    lease: pb::Lease,
    device: DeviceChoice,
    mut client: WorkerServiceClient<Channel>,
    datasets: Arc<Datasets>,
    stop: Arc<AtomicBool>,
    next: NextWork,
) -> Vec<pb::Lease> {
    let lease_id = lease.lease_id.clone();
    let outcome = train(lease, device, &mut client, datasets, stop).await;
    let result = match outcome {
        Ok(Some((result, epochs))) => {
            let request = pb::CompleteJobRequest {
                lease_id: lease_id.clone(),
                result: Some(result),
                epochs,
                lease_next: if next.stopping.load(Ordering::SeqCst) {
                    0
                } else {
                    1
                },
                worker_id: next.worker_id,
            };
            with_retry("complete", || {
                let mut c = client.clone();
                let r = request.clone();
                async move { c.complete_job(r).await.map(|r| r.into_inner().leases) }
            })
            .await
        }
        // Stopped: the lease is stale or the sweep cancelled; the coordinator already knows.
        Ok(None) => Ok(Vec::new()),
        Err(error) => {
            eprintln!("jetsweep-worker: job {lease_id} failed: {error:#}");
            let request = pb::FailJobRequest {
                lease_id: lease_id.clone(),
                error: format!("{error:#}"),
            };
            with_retry("fail", || {
                let mut c = client.clone();
                let r = request.clone();
                async move { c.fail_job(r).await.map(|_| Vec::new()) }
            })
            .await
        }
    };
    result.unwrap_or_else(|s| {
        // A stale lease here means another worker finished or took the job: nothing to do.
        eprintln!("jetsweep-worker: job {lease_id}: {}", s.message());
        Vec::new()
    })
}

/// Trains the job; `Ok(None)` when it was stopped. With the result come the epochs not reported yet
/// (at least the last one), for the completion to carry.
async fn train(
    lease: pb::Lease,
    device: DeviceChoice,
    client: &mut WorkerServiceClient<Channel>,
    datasets: Arc<Datasets>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Option<(pb::TrialResult, Vec<pb::EpochMetrics>)>> {
    let spec = lease
        .spec
        .ok_or_else(|| anyhow::anyhow!("lease {} carries no trial", lease.lease_id))?;
    let dataset = spec
        .dataset
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("lease {} names no dataset", lease.lease_id))?;
    let data = datasets.get(&dataset.sha256, client).await?;
    let config = TrainConfig {
        arch: spec.model.parse::<Architecture>()?,
        batch_size: spec.batch_size as usize,
        max_epochs: spec.max_epochs as usize,
        lr: spec.learning_rate,
        seed: spec.seed,
    };
    config.validate()?;

    // Epochs go to a reporter task over a channel; training never waits on the network.
    let (epochs, incoming) = mpsc::unbounded_channel::<pb::EpochMetrics>();
    let reporter = tokio::spawn(report_epochs(
        client.clone(),
        lease.lease_id.clone(),
        incoming,
        stop.clone(),
    ));
    let stop_flag = stop.clone();
    let last_epoch = config.max_epochs;
    let (summary, last) = tokio::task::spawn_blocking(move || {
        let mut last = None;
        let summary = device::train_on(device, &data, &config, 0, &mut |p| {
            if let Progress::Epoch(m) = p {
                let metrics = pb::EpochMetrics {
                    epoch: m.epoch as u32,
                    lr: m.lr,
                    train_loss: m.train_loss,
                    train_acc: m.train_acc,
                    val_loss: m.val_loss,
                    val_acc: m.val_acc,
                    test_loss: m.test_loss,
                    test_acc: m.test_acc,
                    seconds: m.seconds,
                    samples_per_second: m.samples_per_second,
                };
                // The last epoch waits for the completion, which carries it.
                if m.epoch == last_epoch {
                    last = Some(metrics);
                } else {
                    let _ = epochs.send(metrics);
                }
            }
            if stop_flag.load(Ordering::SeqCst) {
                ControlFlow::Break("stopped by the coordinator".into())
            } else {
                ControlFlow::Continue(())
            }
        });
        (summary, last)
    })
    .await?;
    // Every report in flight is answered before the completion; what was not sent rides with it.
    let mut unsent = reporter.await?;
    unsent.extend(last);
    match summary {
        Ok(s) if !stop.load(Ordering::SeqCst) => Ok(Some((
            pb::TrialResult {
                params: s.params as u64,
                test_acc: s.test_acc,
                best_epoch: s.best_epoch as u32,
                best_test_acc: s.best_test_acc,
            },
            unsent,
        ))),
        Ok(_) | Err(crate::WorkerError::Stopped(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Sends epochs as they come, all that piled up in one report. Stops the job when the coordinator
/// refuses a report or says the sweep was cancelled. Returns the epochs still unsent when training
/// ended.
async fn report_epochs(
    client: WorkerServiceClient<Channel>,
    lease_id: String,
    mut incoming: mpsc::UnboundedReceiver<pb::EpochMetrics>,
    stop: Arc<AtomicBool>,
) -> Vec<pb::EpochMetrics> {
    let mut unsent = Vec::new();
    while let Some(metrics) = incoming.recv().await {
        unsent.push(metrics);
        loop {
            match incoming.try_recv() {
                Ok(m) => unsent.push(m),
                Err(mpsc::error::TryRecvError::Empty) => break,
                // Training is over: the completion carries these.
                Err(mpsc::error::TryRecvError::Disconnected) => return unsent,
            }
        }
        let request = pb::ReportEpochRequest {
            lease_id: lease_id.clone(),
            epochs: std::mem::take(&mut unsent),
        };
        let ack = with_retry("report", || {
            let mut c = client.clone();
            let r = request.clone();
            async move { c.report_epoch(r).await }
        })
        .await;
        match ack {
            Ok(a) if a.get_ref().cancel => stop.store(true, Ordering::SeqCst),
            Ok(_) => {}
            Err(s) => {
                eprintln!(
                    "jetsweep-worker: {lease_id}: report refused ({}); stopping the job",
                    s.message()
                );
                stop.store(true, Ordering::SeqCst);
            }
        }
    }
    unsent
}
