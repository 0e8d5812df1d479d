//! The one epoch loop, whatever computes the steps: K trials (lanes) of one model, batch size and
//! epoch count go through their epochs together, and this loop owns everything that is not
//! arithmetic — each lane's metrics, divergence, best epoch, stop, checkpoints and the progress it
//! reports. An [`Engine`] owns the arithmetic: the CPU loops, burn tensors, or burn's autodiff (the
//! reference, one lane), each in `engine/`.
//!
//! A lane ends on its own: it diverges (its numbers stop being numbers), its observer stops it
//! (a lost lease, a cancelled job, an early-stopping decision), or it reaches `max_epochs`. Its
//! pack-mates go on exactly as if it had never been there: nothing an engine computes mixes lanes.

use std::ops::ControlFlow;
use std::time::Instant;

use jetsweep_data::Prepared;
use jetsweep_proto::metrics::EpochMetrics;
use jetsweep_proto::trial::Hyperparameters;

use super::KeptWeights;
use super::checkpoint::{self, Best, BestWeights, Position, Saved};
use super::recipe::cosine_lr;
use super::{Progress, RunOptions, Summary};
use crate::error::WorkerError;
use jetsweep_proto::weights::ModelWeights;

/// Each lane's mean loss and accuracy over one split, in lane order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LaneMeans {
    pub loss: Vec<f64>,
    pub acc: Vec<f64>,
}

impl From<(Vec<f64>, Vec<f64>)> for LaneMeans {
    fn from((loss, acc): (Vec<f64>, Vec<f64>)) -> Self {
        LaneMeans { loss, acc }
    }
}

/// What the loop needs of an engine: the arithmetic of a pack, on its own data.
pub(crate) trait Engine {
    /// Optimizer steps taken so far (the same for every lane).
    fn steps(&self) -> u64;
    /// Puts `saved` (checked by the loop to be after an epoch of this trial) into a pack of one
    /// lane. Checks it against the model; on an error the engine is unchanged.
    fn resume(&mut self, saved: Saved) -> Result<(), WorkerError>;
    /// One pass over the training split, each lane in its own order for `epoch` (0-based) at its
    /// learning rate for that epoch; `on_step(lane, step, loss)` for the run's first `trace_steps`
    /// steps. Returns once the work is done (a device's sums read back), so the loop can time it.
    fn train_epoch(
        &mut self,
        epoch: usize,
        trace_steps: usize,
        on_step: &mut dyn FnMut(usize, u64, f64),
    ) -> LaneMeans;
    /// Each lane evaluated (running BatchNorm statistics) on the validation split, then on the
    /// test split.
    fn evaluate(&self) -> [LaneMeans; 2];
    /// The asked lanes' state as checkpoint bytes, each with its position.
    fn checkpoints(&self, which: &[(usize, Position)]) -> Vec<Vec<u8>>;
}

/// What one lane is doing.
enum Lane {
    Running {
        best: Best,
        last_test_acc: f64,
        /// The model after the best epoch (kept with `RunOptions::checkpoints`).
        best_weights: Option<BestWeights>,
    },
    Ended(Result<Summary, WorkerError>),
}

/// Refuses a pack that cannot start: an empty split, or saved state for more than one lane.
/// Called before an engine is built (building one costs the initial parameters).
pub(crate) fn check(
    data: &Prepared,
    configs: &[Hyperparameters],
    options: &RunOptions,
) -> Result<(), WorkerError> {
    if data.train.is_empty() || data.test.is_empty() {
        return Err(WorkerError::Invalid(format!(
            "dataset {} has an empty train or test split",
            data.provenance.source
        )));
    }
    if options.resume.is_some() && configs.len() != 1 {
        return Err(WorkerError::Invalid(
            "only a pack of one trial can resume from saved state".into(),
        ));
    }
    Ok(())
}

/// Runs `configs` (already [`check`]ed, and the trials `engine` was built for) through their
/// epochs: from scratch, or a pack of one from [`RunOptions::resume`]. Reports through
/// `observe(lane, progress)`; `observe` returning `Break(reason)` stops that lane after the
/// current epoch's report. Returns each lane's outcome, in order.
pub(crate) fn run(
    mut engine: impl Engine,
    data: &Prepared,
    configs: &[Hyperparameters],
    options: &RunOptions,
    observe: &mut dyn FnMut(usize, Progress<'_>) -> ControlFlow<String>,
) -> Vec<Result<Summary, WorkerError>> {
    let val_kind = data.validation().1;
    let mut lanes: Vec<Lane> = configs
        .iter()
        .map(|_| Lane::Running {
            best: Best::NONE,
            last_test_acc: 0.0,
            best_weights: None,
        })
        .collect();
    let mut first_epoch = 0;
    if let Some(bytes) = &options.resume {
        let resumed = checkpoint::decode_for(bytes, &configs[0]).and_then(|saved| {
            let position = saved.position;
            let best_weights = saved.best_weights();
            engine.resume(saved).map(|()| (position, best_weights))
        });
        match resumed {
            Ok((position, best_weights)) => {
                lanes[0] = Lane::Running {
                    best: position.best,
                    last_test_acc: position.last_test_acc,
                    best_weights,
                };
                first_epoch = position.epoch as usize;
                let _ = observe(0, Progress::Resumed(Ok(position.epoch)));
            }
            Err(e) => {
                let _ = observe(0, Progress::Resumed(Err(&e)));
            }
        }
    }
    let epochs = configs[0].max_epochs as usize;
    let train_rows = data.train.len() as f64;
    for epoch in first_epoch..epochs {
        if lanes.iter().all(|l| matches!(l, Lane::Ended(_))) {
            break;
        }
        // A stop asked for during the epoch's steps takes effect after its report.
        let mut stops: Vec<Option<String>> = vec![None; configs.len()];
        let mut on_step = |lane: usize, step: u64, loss: f64| {
            if matches!(lanes[lane], Lane::Running { .. })
                && let ControlFlow::Break(reason) = observe(
                    lane,
                    Progress::Step {
                        step: step as usize,
                        loss,
                    },
                )
            {
                stops[lane].get_or_insert(reason);
            }
        };
        // The lanes trained together share the epoch's time: each is charged its part, so a
        // pack's jobs add up to the pack's time, not to that many times it.
        let sharing = lanes
            .iter()
            .filter(|l| matches!(l, Lane::Running { .. }))
            .count()
            .max(1) as f64;
        let start = Instant::now();
        let train = engine.train_epoch(epoch, options.trace_steps, &mut on_step);
        let training = start.elapsed().as_secs_f64() / sharing;
        let [val, test] = engine.evaluate();
        let seconds = start.elapsed().as_secs_f64() / sharing;
        let number = epoch as u32 + 1;
        // Lanes whose state is exported after this epoch, once each: to keep their weights (a new
        // best epoch, or the last), to save it as a checkpoint (every epoch but the last), or both.
        let mut exports: Vec<Export> = Vec::new();
        for (lane, state) in lanes.iter_mut().enumerate() {
            let Lane::Running {
                best,
                last_test_acc,
                best_weights,
            } = state
            else {
                continue;
            };
            let config = &configs[lane];
            let metrics = EpochMetrics {
                epoch: number,
                lr: cosine_lr(config.learning_rate, epoch, epochs),
                train_loss: train.loss[lane],
                train_acc: train.acc[lane],
                val_loss: val.loss[lane],
                val_acc: val.acc[lane],
                test_loss: test.loss[lane],
                test_acc: test.acc[lane],
                seconds,
                samples_per_second: train_rows / training.max(1e-9),
            };
            // A lane whose numbers are no longer numbers has diverged; every report of it would be
            // refused. The rest go on.
            if let Err(e) = metrics.check() {
                *state = Lane::Ended(Err(WorkerError::Diverged {
                    epoch: number,
                    what: e.to_string(),
                }));
                continue;
            }
            *last_test_acc = test.acc[lane];
            let improved = val.loss[lane] < best.val_loss;
            if improved {
                *best = Best {
                    val_loss: val.loss[lane],
                    epoch: number,
                    test_acc: test.acc[lane],
                };
            }
            let position = Position {
                epoch: number,
                steps: engine.steps(),
                best: *best,
                last_test_acc: *last_test_acc,
            };
            let mut export = Export {
                lane,
                position,
                keep: options.checkpoints && (improved || number == config.max_epochs),
                save: false,
            };
            if let ControlFlow::Break(reason) = observe(lane, Progress::Epoch(&metrics)) {
                stops[lane].get_or_insert(reason);
            }
            if let Some(reason) = stops[lane].take() {
                *state = Lane::Ended(Err(WorkerError::Stopped(reason)));
                continue;
            }
            export.save = options.checkpoints && number != config.max_epochs;
            if number == config.max_epochs {
                *state = Lane::Ended(Ok(Summary {
                    params: config.model.param_count(),
                    epochs: config.max_epochs,
                    test_acc: test.acc[lane],
                    best_epoch: best.epoch,
                    best_test_acc: best.test_acc,
                    val: val_kind,
                    // The best epoch's weights if it was an earlier one; the last epoch's (and
                    // the best's, when it is this one) come once this epoch's are taken.
                    weights: KeptWeights {
                        best: best_weights.take().map(|w| ModelWeights {
                            model: config.model.name.clone(),
                            epoch: best.epoch,
                            steps: w.steps,
                            tensors: w.tensors,
                        }),
                        last: None,
                    },
                }));
            }
            if export.keep || export.save {
                exports.push(export);
            }
        }
        if exports.is_empty() {
            continue;
        }
        let which: Vec<(usize, Position)> = exports.iter().map(|e| (e.lane, e.position)).collect();
        for (export, mut state) in exports.iter().zip(engine.checkpoints(&which)) {
            let (lane, position) = (export.lane, export.position);
            if export.keep {
                keep_weights(configs, &mut lanes[lane], lane, &position, &state);
            }
            if !export.save {
                continue;
            }
            // A state after an epoch that is not the best carries the best one's weights.
            if let Lane::Running {
                best_weights: Some(b),
                best,
                ..
            } = &lanes[lane]
                && best.epoch < position.epoch
            {
                checkpoint::attach_best(&mut state, b);
            }
            if let ControlFlow::Break(reason) = observe(
                lane,
                Progress::Checkpoint {
                    epoch: position.epoch,
                    state,
                },
            ) {
                lanes[lane] = Lane::Ended(Err(WorkerError::Stopped(reason)));
            }
        }
    }
    lanes
        .into_iter()
        .map(|lane| match lane {
            Lane::Ended(outcome) => outcome,
            Lane::Running { .. } => Err(WorkerError::Stopped(
                "the pack ended before this trial did".into(),
            )),
        })
        .collect()
}

/// One lane's state to export after an epoch, and what for.
struct Export {
    lane: usize,
    position: Position,
    /// Its weights are wanted: a new best epoch, or its last.
    keep: bool,
    /// Its state is a checkpoint to report.
    save: bool,
}

/// Takes a lane's weights from its exported `state` (after a new best epoch, or its last): a new
/// best is kept in the running lane; a finished lane's summary gets its last weights, and its best
/// (these, when the last epoch is the best).
fn keep_weights(
    configs: &[Hyperparameters],
    lane: &mut Lane,
    index: usize,
    position: &Position,
    state: &[u8],
) {
    let Ok(saved) = checkpoint::decode(state) else {
        return;
    };
    let weights = BestWeights {
        steps: saved.position.steps,
        tensors: saved.tensors,
    };
    match lane {
        Lane::Running { best_weights, .. } => *best_weights = Some(weights),
        Lane::Ended(Ok(summary)) => {
            let last = ModelWeights {
                model: configs[index].model.name.clone(),
                epoch: position.epoch,
                steps: weights.steps,
                tensors: weights.tensors,
            };
            if position.best.epoch == position.epoch {
                summary.weights.best = Some(last.clone());
            }
            summary.weights.last = Some(last);
        }
        Lane::Ended(Err(_)) => {}
    }
}

/// The trials of `configs` (in order) grouped into packs of at most `max_pack` that can train
/// together: returns indices into `configs`.
pub fn packs(configs: &[Hyperparameters], max_pack: usize) -> Vec<Vec<usize>> {
    let max_pack = max_pack.max(1);
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, c) in configs.iter().enumerate() {
        match groups
            .iter_mut()
            .find(|g| g.len() < max_pack && configs[g[0]].packs_with(c))
        {
            Some(g) => g.push(i),
            None => groups.push(vec![i]),
        }
    }
    groups
}
