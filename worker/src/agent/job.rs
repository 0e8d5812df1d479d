//! Running leased jobs as one pack: dataset, training on a blocking thread (the packed trainer, a
//! pack of one for a lone job), each job's epoch reports, then each job's result or error. Each job
//! keeps its own lease: a report on a stale lease stops that job only (another worker owns it
//! now), and the others of its pack go on.
//!
//! Round trips are kept few, because a tiny trial's epochs take milliseconds: epochs that pile up
//! while a report is in flight go in the next report together, the last epoch rides with the
//! completion, and the completion asks for the worker's next job in the same call.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use jetsweep_proto::trial::Hyperparameters;
use jetsweep_proto::v1 as pb;
use tokio::sync::mpsc;
use tracing::Instrument;

use super::Shutdown;
use super::client::{CoordinatorClient, Reported, Unsent};
use super::datasets::Datasets;
use crate::WorkerError;
use crate::device::{self, DeviceChoice};
use crate::train::{Progress, RunOptions};
use jetsweep_proto::limits::MAX_CHECKPOINT_BYTES;

/// A leased job on its way into a pack: its lease and its stop flag (set when the lease goes stale
/// or the sweep is cancelled).
pub struct Leased {
    pub lease: pb::Lease,
    pub stop: Arc<AtomicBool>,
}

/// Runs the jobs of `pack` (leases that train together, as the coordinator granted them) to their
/// ends; never panics on a bad job: errors are reported as that job's failure. Returns the packs
/// granted with the last completion (the worker's next work). Everything each job logs carries
/// its sweep, job id, lease and attempt.
/// `shutdown` says whether to ask for more work with the last completion (not while stopping) and
/// whether a stopped job is handed back.
pub async fn run_pack(
    pack: Vec<Leased>,
    device: DeviceChoice,
    client: CoordinatorClient,
    datasets: Arc<Datasets>,
    shutdown: Arc<Shutdown>,
    pack_size: u32,
) -> Vec<pb::LeasePack> {
    let spans: Vec<tracing::Span> = pack
        .iter()
        .map(|j| {
            tracing::info_span!(
                "job",
                sweep = %j.lease.sweep_id,
                job = %j.lease.job_id,
                lease = %j.lease.lease_id,
                attempt = j.lease.attempt
            )
        })
        .collect();
    let started = Instant::now();
    let outcomes = train_pack(&pack, &spans, device, &client, datasets).await;
    let seconds = started.elapsed().as_secs_f64();
    // Every job but the last finishes at once, together; the last asks for the next work.
    let last = pack.len() - 1;
    let mut finishing = tokio::task::JoinSet::new();
    let mut next_leases = Vec::new();
    for (i, ((job, outcome), span)) in pack.into_iter().zip(outcomes).zip(spans).enumerate() {
        let finish = finish(
            job.lease.lease_id,
            outcome,
            seconds,
            client.clone(),
            (i == last && !shutdown.stopping()).then_some(pack_size),
            shutdown.clone(),
        )
        .instrument(span);
        if i == last {
            while finishing.join_next().await.is_some() {}
            next_leases = finish.await;
        } else {
            finishing.spawn(finish);
        }
    }
    next_leases
}

/// Tells the coordinator how a job ended: its result (asking, with `next_pack` set, for the slot it
/// frees to be filled with a pack of up to that size in the same call), its failure, or, when the
/// worker is handing it back, what it had not reported yet. Returns the packs a completion brought.
async fn finish(
    lease_id: String,
    outcome: Result<Trained, WorkerError>,
    seconds: f64,
    client: CoordinatorClient,
    next_pack: Option<u32>,
    shutdown: Arc<Shutdown>,
) -> Vec<pb::LeasePack> {
    match outcome {
        Ok(Trained::Done(result, epochs, weights)) => {
            tracing::info!(
                seconds,
                test_acc = result.test_acc,
                best_test_acc = result.best_test_acc,
                "job done"
            );
            return client
                .complete(&lease_id, result, epochs, &weights, next_pack)
                .await;
        }
        // Handed back: the worker is stopping; the job goes back to the queue.
        Ok(Trained::Stopped(unsent)) if shutdown.handing_back() => {
            tracing::info!(seconds, "job handed back (the worker is stopping)");
            client.hand_back(&lease_id, unsent).await;
        }
        // Stopped: the lease is stale or the sweep cancelled; the coordinator already knows.
        Ok(Trained::Stopped(_)) => {
            tracing::info!(
                seconds,
                "job stopped (lease no longer current, or sweep cancelled)"
            );
        }
        Err(error) => {
            tracing::warn!(seconds, error = %error, "job failed");
            let kind = match error {
                WorkerError::Diverged { .. } => pb::FailureKind::Diverged,
                _ => pb::FailureKind::Failed,
            };
            client.fail(&lease_id, kind, &error).await;
        }
    }
    Vec::new()
}

/// How training a job ended (apart from an error).
enum Trained {
    /// The result, with the epochs not reported yet (at least the last one) for the completion to
    /// carry.
    /// And the weights of its best and last epoch.
    Done(
        pb::TrialResult,
        Vec<pb::EpochMetrics>,
        crate::train::KeptWeights,
    ),
    /// Stopped before the end (the lease went stale, the sweep was cancelled, or the worker is
    /// handing the job back), with what was not reported yet.
    Stopped(Unsent),
}

/// One finished epoch on its way to the coordinator, with the state after it when it was saved.
type EpochReport = (pb::EpochMetrics, Option<pb::TrialCheckpoint>);

/// A job of a pack, checked and ready to train.
struct Ready {
    config: Hyperparameters,
    /// Epochs go to the job's reporter task over this channel; training never waits on the
    /// network.
    epochs: mpsc::UnboundedSender<EpochReport>,
    reporter: tokio::task::JoinHandle<Unsent>,
}

/// Trains the jobs of a pack together, the lone job of a pack of one from its lease's saved state
/// if it has one, saving each job's state after each epoch for its next attempt when the model's
/// state fits in a report. Returns each job's outcome, in order.
async fn train_pack(
    pack: &[Leased],
    spans: &[tracing::Span],
    device: DeviceChoice,
    client: &CoordinatorClient,
    datasets: Arc<Datasets>,
) -> Vec<Result<Trained, WorkerError>> {
    let mut outcomes: Vec<Option<Result<Trained, WorkerError>>> =
        pack.iter().map(|_| None).collect();
    // Check each job; a job whose lease is unusable fails alone.
    let mut ready: Vec<(usize, Ready)> = Vec::new();
    let mut dataset: Option<pb::DatasetRef> = None;
    for (i, job) in pack.iter().enumerate() {
        let _entered = spans[i].enter();
        match check_lease(&job.lease) {
            Ok((config, d)) => {
                tracing::info!(
                    model = %config.model,
                    optimizer = %config.optimizer,
                    batch_size = config.batch_size,
                    max_epochs = config.max_epochs,
                    learning_rate = config.learning_rate,
                    seed = config.seed,
                    dataset = %d.sha256,
                    pack = pack.len(),
                    "job started"
                );
                let (epochs, incoming) = mpsc::unbounded_channel::<EpochReport>();
                let reporter = tokio::spawn(
                    report_epochs(
                        client.clone(),
                        job.lease.lease_id.clone(),
                        incoming,
                        job.stop.clone(),
                    )
                    .instrument(spans[i].clone()),
                );
                dataset.get_or_insert(d);
                ready.push((
                    i,
                    Ready {
                        config,
                        epochs,
                        reporter,
                    },
                ));
            }
            Err(e) => outcomes[i] = Some(Err(e)),
        }
    }
    if let Some(dataset) = dataset {
        let ready_spans = ready.iter().map(|(i, _)| spans[*i].clone()).collect();
        let trained =
            train_ready(&ready, pack, ready_spans, dataset, device, client, datasets).await;
        let (summaries, last) = match trained {
            Ok((summaries, last)) => (summaries, last),
            Err(e) => {
                // The pack could not train at all (its dataset, its device): every job of it fails
                // with the reason, and may be tried again.
                let reason = e.to_string();
                let failed = ready
                    .iter()
                    .map(|_| Err(WorkerError::Task(reason.clone())))
                    .collect();
                (failed, vec![None; ready.len()])
            }
        };
        // Every report in flight is answered before the completion; what was not sent rides with it.
        for (((i, job), summary), last) in ready.into_iter().zip(summaries).zip(last) {
            // The training side's senders are gone; this last one closing ends the reporter.
            drop(job.epochs);
            let unsent = match job.reporter.await {
                Ok(u) => u,
                Err(e) => {
                    outcomes[i] = Some(Err(WorkerError::from(e)));
                    continue;
                }
            };
            let stopped = pack[i].stop.load(Ordering::SeqCst);
            outcomes[i] = Some(match summary {
                Ok(s) if !stopped => {
                    let mut epochs = unsent.epochs;
                    epochs.extend(last);
                    Ok(Trained::Done(
                        pb::TrialResult::from(&s.result()),
                        epochs,
                        s.weights.clone(),
                    ))
                }
                Ok(_) | Err(WorkerError::Stopped(_)) => Ok(Trained::Stopped(unsent)),
                Err(e) => Err(e),
            });
        }
    }
    outcomes
        .into_iter()
        .map(|o| o.expect("every job has an outcome"))
        .collect()
}

/// The trial a lease carries, through the same validation as the sweep file, and its dataset.
fn check_lease(lease: &pb::Lease) -> Result<(Hyperparameters, pb::DatasetRef), WorkerError> {
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
        .clone()
        .ok_or_else(|| bad_lease("names no dataset"))?;
    Ok((Hyperparameters::try_from(spec)?, dataset))
}

/// Each job's summary (or error) and last epoch (which its completion carries).
type PackTrained = (
    Vec<Result<crate::train::Summary, WorkerError>>,
    Vec<Option<pb::EpochMetrics>>,
);

/// Trains the checked jobs of a pack on a blocking thread, routing each job's epochs and saved
/// states to its reporter, and stopping a job when its stop flag is set.
async fn train_ready(
    ready: &[(usize, Ready)],
    pack: &[Leased],
    spans: Vec<tracing::Span>,
    dataset: pb::DatasetRef,
    device: DeviceChoice,
    client: &CoordinatorClient,
    datasets: Arc<Datasets>,
) -> Result<PackTrained, WorkerError> {
    let data = datasets.get(&dataset.sha256, &mut client.rpc()).await?;
    let configs: Vec<Hyperparameters> = ready.iter().map(|(_, r)| r.config.clone()).collect();
    let lone = ready.len() == 1;
    let options = RunOptions {
        trace_steps: 0,
        // Only a lone job resumes (a pack's jobs are first attempts).
        resume: if lone {
            client.saved_state(&pack[ready[0].0].lease).await
        } else {
            None
        },
        checkpoints: checkpoint_fits(&configs[0]),
    };
    let senders: Vec<mpsc::UnboundedSender<EpochReport>> =
        ready.iter().map(|(_, r)| r.epochs.clone()).collect();
    let stops: Vec<Arc<AtomicBool>> = ready.iter().map(|(i, _)| pack[*i].stop.clone()).collect();
    tokio::task::spawn_blocking(move || {
        let k = configs.len();
        let mut last: Vec<Option<pb::EpochMetrics>> = vec![None; k];
        // An epoch whose state comes next, in its own call.
        let mut pending: Vec<Option<pb::EpochMetrics>> = vec![None; k];
        let summaries = device::train_pack_on(device, &data, &configs, &options, &mut |t, p| {
            let _entered = spans[t].enter();
            match p {
                Progress::Epoch(m) => {
                    let metrics = pb::EpochMetrics::from(m);
                    // The last epoch waits for the completion, which carries it.
                    if m.epoch == configs[t].max_epochs {
                        last[t] = Some(metrics);
                    } else if options.checkpoints {
                        pending[t] = Some(metrics);
                    } else {
                        let _ = senders[t].send((metrics, None));
                    }
                }
                Progress::Checkpoint { epoch, state } => {
                    if let Some(metrics) = pending[t].take() {
                        let checkpoint = (state.len() <= MAX_CHECKPOINT_BYTES)
                            .then_some(pb::TrialCheckpoint { epoch, state });
                        let _ = senders[t].send((metrics, checkpoint));
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
            if stops[t].load(Ordering::SeqCst) {
                ControlFlow::Break("stopped by the coordinator".into())
            } else {
                ControlFlow::Continue(())
            }
        })?;
        Ok::<_, WorkerError>((summaries, last))
    })
    .await?
}

/// Whether a trial's state fits in a report: Adam keeps two numbers per parameter beside it, and
/// BatchNorm two running statistics per feature.
fn checkpoint_fits(config: &Hyperparameters) -> bool {
    config.model.param_count().saturating_mul(4 * 4) < MAX_CHECKPOINT_BYTES
}

/// Sends epochs as they come, all that piled up in one report with the state after the last of
/// them. Stops the job when the coordinator refuses a report or says the sweep was cancelled.
/// Returns what was still unsent when training ended.
async fn report_epochs(
    client: CoordinatorClient,
    lease_id: String,
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
        if client.report(&lease_id, batch).await == Reported::Stop {
            stop.store(true, Ordering::SeqCst);
        }
    }
    unsent
}
