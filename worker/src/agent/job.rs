//! Running one leased job: dataset, training on a blocking thread, a report per epoch, then the
//! result or the error. Reports on a stale lease stop the job (another worker owns it now).

use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use jetsweep_proto::v1 as pb;
use jetsweep_proto::v1::worker_service_client::WorkerServiceClient;
use tokio::sync::mpsc;
use tonic::transport::Channel;

use super::datasets::Datasets;
use super::with_retry;
use crate::device::{self, DeviceChoice};
use crate::model::Architecture;
use crate::train::{Progress, TrainConfig};

/// Runs one job to its end; never panics on a bad job: errors are reported as the job's failure.
pub async fn run(
    lease: pb::Lease,
    device: DeviceChoice,
    mut client: WorkerServiceClient<Channel>,
    datasets: Arc<Datasets>,
    stop: Arc<AtomicBool>,
) {
    let lease_id = lease.lease_id.clone();
    let outcome = train(lease, device, &mut client, datasets, stop.clone()).await;
    let result = match outcome {
        Ok(Some(result)) => {
            let request = pb::CompleteJobRequest {
                lease_id: lease_id.clone(),
                result: Some(result),
            };
            with_retry("complete", || {
                let mut c = client.clone();
                let r = request.clone();
                async move { c.complete_job(r).await.map(|_| ()) }
            })
            .await
        }
        // Stopped: the lease is stale or the sweep cancelled; the coordinator already knows.
        Ok(None) => Ok(()),
        Err(error) => {
            eprintln!("jetsweep-worker: job {lease_id} failed: {error:#}");
            let request = pb::FailJobRequest {
                lease_id: lease_id.clone(),
                error: format!("{error:#}"),
            };
            with_retry("fail", || {
                let mut c = client.clone();
                let r = request.clone();
                async move { c.fail_job(r).await.map(|_| ()) }
            })
            .await
        }
    };
    if let Err(s) = result {
        // A stale lease here means another worker finished or took the job: nothing to do.
        eprintln!("jetsweep-worker: job {lease_id}: {}", s.message());
    }
}

/// Trains the job; `Ok(None)` when it was stopped.
async fn train(
    lease: pb::Lease,
    device: DeviceChoice,
    client: &mut WorkerServiceClient<Channel>,
    datasets: Arc<Datasets>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Option<pb::TrialResult>> {
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
    let (epochs, mut incoming) = mpsc::unbounded_channel::<pb::EpochMetrics>();
    let reporter = {
        let (client, lease_id, stop) = (client.clone(), lease.lease_id.clone(), stop.clone());
        tokio::spawn(async move {
            while let Some(metrics) = incoming.recv().await {
                let request = pb::ReportEpochRequest {
                    lease_id: lease_id.clone(),
                    metrics: Some(metrics),
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
        })
    };
    let stop_flag = stop.clone();
    let summary = tokio::task::spawn_blocking(move || {
        device::train_on(device, &data, &config, 0, &mut |p| {
            if let Progress::Epoch(m) = p {
                let _ = epochs.send(pb::EpochMetrics {
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
                });
            }
            if stop_flag.load(Ordering::SeqCst) {
                ControlFlow::Break("stopped by the coordinator".into())
            } else {
                ControlFlow::Continue(())
            }
        })
    })
    .await?;
    // Every epoch report is delivered before the completion.
    reporter.await?;
    match summary {
        Ok(s) if !stop.load(Ordering::SeqCst) => Ok(Some(pb::TrialResult {
            params: s.params as u64,
            test_acc: s.test_acc,
            best_epoch: s.best_epoch as u32,
            best_test_acc: s.best_test_acc,
        })),
        Ok(_) | Err(crate::WorkerError::Stopped(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}
