//! Running one leased job: dataset, training on a blocking thread, epoch reports, then the result or
//! the error. Reports on a stale lease stop the job (another worker owns it now).
//!
//! Round trips are kept few, because a tiny trial's epochs take milliseconds: epochs that pile up
//! while a report is in flight go in the next report together, the last epoch rides with the
//! completion, and the completion asks for the worker's next job in the same call.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use jetsweep_proto::auth::Channel;
use jetsweep_proto::trial::Hyperparameters;
use jetsweep_proto::v1 as pb;
use jetsweep_proto::v1::worker_service_client::WorkerServiceClient;
use tokio::sync::mpsc;
use tracing::Instrument;

use super::datasets::Datasets;
use super::{with_retry, with_retry_unless_refused};
use crate::WorkerError;
use crate::device::{self, DeviceChoice};
use crate::train::{Progress, RunOptions};
use jetsweep_proto::limits::MAX_CHECKPOINT_BYTES;

/// Who is asking, and whether it wants another job when this one completes.
pub struct NextWork {
    pub identity: Arc<super::identity::Identity>,
    /// Stopping: complete without leasing more; handing back: tell the coordinator the job is
    /// released.
    pub shutdown: Arc<super::Shutdown>,
}

/// Runs one job to its end; never panics on a bad job: errors are reported as the job's failure.
/// Returns the leases granted with its completion (the worker's next jobs). Everything it logs
/// carries the job's sweep, job id, lease and attempt.
pub async fn run(
    lease: pb::Lease,
    device: DeviceChoice,
    client: WorkerServiceClient<Channel>,
    datasets: Arc<Datasets>,
    stop: Arc<AtomicBool>,
    next: NextWork,
) -> Vec<pb::Lease> {
    let span = tracing::info_span!(
        "job",
        sweep = %lease.sweep_id,
        job = %lease.job_id,
        lease = %lease.lease_id,
        attempt = lease.attempt
    );
    run_job(lease, device, client, datasets, stop, next)
        .instrument(span)
        .await
}

async fn run_job(
    lease: pb::Lease,
    device: DeviceChoice,
    mut client: WorkerServiceClient<Channel>,
    datasets: Arc<Datasets>,
    stop: Arc<AtomicBool>,
    next: NextWork,
) -> Vec<pb::Lease> {
    let lease_id = lease.lease_id.clone();
    // The lease answers to the worker it was granted to: every word about it carries that id.
    let worker_id = next.identity.id();
    let started = Instant::now();
    let outcome = train(lease, &worker_id, device, &mut client, datasets, stop).await;
    let seconds = started.elapsed().as_secs_f64();
    let result = match outcome {
        Ok(Trained::Done(result, epochs)) => {
            tracing::info!(
                seconds,
                test_acc = result.test_acc,
                best_test_acc = result.best_test_acc,
                "job done"
            );
            let request = pb::CompleteJobRequest {
                pack_size: 1,
                lease_id: lease_id.clone(),
                result: Some(result),
                epochs,
                lease_next: if next.shutdown.stopping() { 0 } else { 1 },
                worker_id: worker_id.clone(),
                request_id: super::next_request_id(),
            };
            with_retry_unless_refused("complete", || {
                let mut c = client.clone();
                let r = request.clone();
                async move { c.complete_job(r).await.map(|r| r.into_inner().leases) }
            })
            .await
        }
        // Handed back: the worker is stopping; the job goes back to the queue. The coordinator
        // may be away: tell it within the grace, or leave the lease to expire.
        Ok(Trained::Stopped(unsent)) if next.shutdown.handing_back() => {
            tracing::info!(seconds, "job handed back (the worker is stopping)");
            // The epochs not reported yet go first, with the state after the last of them: the
            // next attempt resumes there.
            let report = (!unsent.epochs.is_empty()).then(|| pb::ReportEpochRequest {
                lease_id: lease_id.clone(),
                epochs: unsent.epochs,
                worker_id: worker_id.clone(),
                checkpoint: unsent.checkpoint,
            });
            let request = pb::FailJobRequest {
                lease_id: lease_id.clone(),
                error: "the worker was stopped".into(),
                worker_id: worker_id.clone(),
                released: true,
                ..Default::default()
            };
            let handed = tokio::time::timeout(super::HAND_BACK_GRACE, async {
                if let Some(report) = &report {
                    let reported = with_retry("report", || {
                        let mut c = client.clone();
                        let r = report.clone();
                        async move { c.report_epoch(r).await }
                    })
                    .await;
                    if let Err(s) = reported {
                        tracing::info!(status = %s.message(), "last epochs not taken");
                    }
                }
                with_retry("hand back", || {
                    let mut c = client.clone();
                    let r = request.clone();
                    async move { c.fail_job(r).await.map(|_| Vec::new()) }
                })
                .await
            })
            .await;
            handed.unwrap_or_else(|_| Ok(Vec::new()))
        }
        // Stopped: the lease is stale or the sweep cancelled; the coordinator already knows.
        Ok(Trained::Stopped(_)) => {
            tracing::info!(
                seconds,
                "job stopped (lease no longer current, or sweep cancelled)"
            );
            Ok(Vec::new())
        }
        Err(error) => {
            tracing::warn!(seconds, error = %error, "job failed");
            let request = pb::FailJobRequest {
                lease_id: lease_id.clone(),
                error: error.to_string(),
                deterministic: matches!(error, WorkerError::Diverged { .. }),
                worker_id: worker_id.clone(),
                released: false,
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
        tracing::info!(status = %s.message(), "the coordinator did not take the outcome");
        Vec::new()
    })
}

/// How training a job ended (apart from an error).
enum Trained {
    /// The result, with the epochs not reported yet (at least the last one) for the completion to
    /// carry.
    Done(pb::TrialResult, Vec<pb::EpochMetrics>),
    /// Stopped before the end (the lease went stale, the sweep was cancelled, or the worker is
    /// handing the job back), with what was not reported yet.
    Stopped(Unsent),
}

/// Epochs not reported yet, and the trial's state after the last of them (if saved).
#[derive(Default)]
struct Unsent {
    epochs: Vec<pb::EpochMetrics>,
    checkpoint: Option<pb::TrialCheckpoint>,
}

/// One finished epoch on its way to the coordinator, with the state after it when it was saved.
type EpochReport = (pb::EpochMetrics, Option<pb::TrialCheckpoint>);

/// Trains the job, from the lease's saved state if it has one, saving the state after each epoch
/// for the next attempt when the model's state fits in a report.
async fn train(
    lease: pb::Lease,
    worker_id: &str,
    device: DeviceChoice,
    client: &mut WorkerServiceClient<Channel>,
    datasets: Arc<Datasets>,
    stop: Arc<AtomicBool>,
) -> Result<Trained, WorkerError> {
    let bad_lease = |what: &str| WorkerError::BadLease {
        lease: lease.lease_id.clone(),
        what: what.to_string(),
    };
    let spec = lease
        .spec
        .as_ref()
        .ok_or_else(|| bad_lease("carries no trial"))?;
    let dataset = spec
        .dataset
        .as_ref()
        .ok_or_else(|| bad_lease("names no dataset"))?;
    // Every hyperparameter the coordinator sent, through the same validation as the sweep file.
    let config = Hyperparameters::try_from(spec)?;
    tracing::info!(
        model = %config.model,
        optimizer = %config.optimizer,
        batch_size = config.batch_size,
        max_epochs = config.max_epochs,
        learning_rate = config.learning_rate,
        seed = config.seed,
        dataset = %dataset.sha256,
        "job started"
    );
    let data = datasets.get(&dataset.sha256, client).await?;
    let options = RunOptions {
        trace_steps: 0,
        resume: saved_state(&lease, worker_id, client).await,
        checkpoints: checkpoint_fits(&config),
    };

    // Epochs go to a reporter task over a channel; training never waits on the network.
    let (epochs, incoming) = mpsc::unbounded_channel::<EpochReport>();
    let reporter = tokio::spawn(
        report_epochs(
            client.clone(),
            lease.lease_id.clone(),
            worker_id.to_string(),
            incoming,
            stop.clone(),
        )
        .in_current_span(),
    );
    let stop_flag = stop.clone();
    let last_epoch = config.max_epochs;
    let (summary, last) = tokio::task::spawn_blocking(move || {
        let mut last = None;
        // An epoch whose state comes next, in its own call.
        let mut pending = None;
        let summary = device::train_on(device, &data, &config, &options, &mut |p| {
            match p {
                Progress::Epoch(m) => {
                    let metrics = pb::EpochMetrics::from(m);
                    // The last epoch waits for the completion, which carries it.
                    if m.epoch == last_epoch {
                        last = Some(metrics);
                    } else if options.checkpoints {
                        pending = Some(metrics);
                    } else {
                        let _ = epochs.send((metrics, None));
                    }
                }
                Progress::Checkpoint { epoch, state } => {
                    if let Some(metrics) = pending.take() {
                        let checkpoint = (state.len() <= MAX_CHECKPOINT_BYTES)
                            .then_some(pb::TrialCheckpoint { epoch, state });
                        let _ = epochs.send((metrics, checkpoint));
                    }
                }
                Progress::Resumed(Ok(epoch)) => {
                    tracing::info!(epoch, "resumed from the state saved after epoch {epoch}");
                }
                Progress::Resumed(Err(e)) => {
                    tracing::warn!(error = %e, "saved state not used; starting from epoch 1");
                }
                Progress::Step { .. } => {}
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
    match summary {
        Ok(s) if !stop.load(Ordering::SeqCst) => {
            unsent.epochs.extend(last);
            Ok(Trained::Done(
                pb::TrialResult::from(&s.result()),
                unsent.epochs,
            ))
        }
        Ok(_) | Err(WorkerError::Stopped(_)) => Ok(Trained::Stopped(unsent)),
        Err(e) => Err(e),
    }
}

/// Whether a trial's state fits in a report: Adam keeps two numbers per parameter beside it, and
/// BatchNorm two running statistics per feature.
fn checkpoint_fits(config: &Hyperparameters) -> bool {
    config.model.param_count().saturating_mul(4 * 4) < MAX_CHECKPOINT_BYTES
}

/// The state the lease resumes from, fetched from the coordinator; `None` (start from epoch 1) when
/// it has none or the fetch fails.
async fn saved_state(
    lease: &pb::Lease,
    worker_id: &str,
    client: &mut WorkerServiceClient<Channel>,
) -> Option<Vec<u8>> {
    if lease.resume_epoch == 0 {
        return None;
    }
    let request = pb::FetchCheckpointRequest {
        lease_id: lease.lease_id.clone(),
        worker_id: worker_id.to_string(),
    };
    let fetched = with_retry("fetch checkpoint", || {
        let mut c = client.clone();
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

/// Sends epochs as they come, all that piled up in one report with the state after the last of
/// them. Stops the job when the coordinator refuses a report or says the sweep was cancelled.
/// Returns what was still unsent when training ended.
async fn report_epochs(
    client: WorkerServiceClient<Channel>,
    lease_id: String,
    worker_id: String,
    mut incoming: mpsc::UnboundedReceiver<EpochReport>,
    stop: Arc<AtomicBool>,
) -> Unsent {
    let mut unsent = Unsent::default();
    let add = |unsent: &mut Unsent, (metrics, checkpoint): EpochReport| {
        unsent.epochs.push(metrics);
        // Only the state after the newest epoch is worth sending.
        unsent.checkpoint = checkpoint;
    };
    while let Some(report) = incoming.recv().await {
        add(&mut unsent, report);
        loop {
            match incoming.try_recv() {
                Ok(report) => add(&mut unsent, report),
                Err(mpsc::error::TryRecvError::Empty) => break,
                // Training is over: the completion (or the hand-back) carries these.
                Err(mpsc::error::TryRecvError::Disconnected) => return unsent,
            }
        }
        let batch = std::mem::take(&mut unsent);
        let request = pb::ReportEpochRequest {
            lease_id: lease_id.clone(),
            epochs: batch.epochs,
            worker_id: worker_id.clone(),
            checkpoint: batch.checkpoint,
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
                tracing::info!(status = %s.message(), "epoch report refused; stopping the job");
                stop.store(true, Ordering::SeqCst);
            }
        }
    }
    unsent
}
