//! Packed training: K trials that share a model architecture, batch size, epoch count and dataset
//! train as one pack, each with its own seed (initial weights and batch order), learning rate,
//! BatchNorm statistics, Adam state, metrics and result — the result of training it alone.
//!
//! Two engines compute a pack: [`super::tensor_pack`] on tensors (any burn backend; GPUs) and
//! [`super::cpu_pack`] as plain loops (the CPU, where a tensor library's per-element cost dominates
//! models this small). This module is what they share: the epoch loop ([`run_pack`]: metrics, best
//! epoch, divergence, stops, checkpoints), the entry points, and grouping trials into packs. The
//! unpacked autodiff trainer ([`super::Trainer`]) is the reference both are tested against, step by
//! step (`packed_tests.rs`).

use std::ops::ControlFlow;
use std::time::Instant;

use burn::tensor::backend::Backend;
use jetsweep_data::Prepared;
use jetsweep_proto::metrics::EpochMetrics;
use jetsweep_proto::trial::Hyperparameters;

use super::checkpoint::{self, Position};
use super::cpu_pack::CpuPack;
pub use super::tensor_pack::DeviceData;
use super::tensor_pack::PackedTrainer;
use super::{Progress, RunOptions, Summary, cosine_lr};
use crate::error::WorkerError;

/// What one trial of a pack is doing.
enum TrialRun {
    Running {
        best: Option<checkpoint::Best>,
        last_test_acc: f64,
    },
    Ended(Result<Summary, WorkerError>),
}

/// Trains `configs` as one pack on `data` (from scratch, or a pack of one from
/// [`RunOptions::resume`]; a pack of more cannot resume), reporting each trial's epochs through `observe(trial, progress)`.
/// `observe` returning `Break(reason)` stops that trial (the others go on); a trial that diverges
/// ends with [`WorkerError::Diverged`] and the others go on. Returns each trial's outcome, in order;
/// an error for the whole pack only when it cannot start (trials that do not pack together, an
/// empty split).
pub fn train_pack<B: Backend>(
    data: &Prepared,
    configs: &[Hyperparameters],
    device: &B::Device,
    options: &RunOptions,
    observe: &mut dyn FnMut(usize, Progress<'_>) -> ControlFlow<String>,
) -> Result<Vec<Result<Summary, WorkerError>>, WorkerError> {
    let on_device = DeviceData::<B>::upload(data, device);
    train_pack_uploaded(data, &on_device, configs, device, options, observe)
}

/// [`train_pack`] on `data` already uploaded to `device` as `on_device`:
/// a worker uploads its dataset once, whatever number of packs it trains on it.
pub fn train_pack_uploaded<B: Backend>(
    data: &Prepared,
    on_device: &DeviceData<B>,
    configs: &[Hyperparameters],
    device: &B::Device,
    options: &RunOptions,
    observe: &mut dyn FnMut(usize, Progress<'_>) -> ControlFlow<String>,
) -> Result<Vec<Result<Summary, WorkerError>>, WorkerError> {
    check_pack(data, configs, options)?;
    let engine = BurnEngine {
        trainer: PackedTrainer::<B>::new(configs.to_vec(), device.clone())?,
        data: on_device,
    };
    run_pack(engine, data, configs, options, observe)
}

/// [`train_pack`] on the CPU with the loop engine ([`super::cpu_pack`]): the same computation,
/// several times faster on one core than the tensor library for models this small.
pub fn train_pack_cpu(
    data: &Prepared,
    configs: &[Hyperparameters],
    options: &RunOptions,
    observe: &mut dyn FnMut(usize, Progress<'_>) -> ControlFlow<String>,
) -> Result<Vec<Result<Summary, WorkerError>>, WorkerError> {
    check_pack(data, configs, options)?;
    let engine = CpuEngine {
        pack: CpuPack::new(configs.to_vec())?,
        data,
    };
    run_pack(engine, data, configs, options, observe)
}

/// Refuses a pack that cannot start: an empty split, or saved state for more than one trial.
fn check_pack(
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

/// What the epoch loop needs of a pack's engine: the device trainer, or the CPU loops.
trait Engine {
    fn resume(&mut self, bytes: &[u8]) -> Result<Position, WorkerError>;
    fn steps(&self) -> u64;
    /// One pass over the training split; each trial's mean loss and accuracy, and the seconds.
    fn train_epoch(
        &mut self,
        epoch: usize,
        trace_steps: usize,
        on_step: &mut dyn FnMut(usize, u64, f64),
    ) -> (Vec<f64>, Vec<f64>, f64);
    /// Each trial's mean loss and accuracy on the validation split, then on the test split.
    fn evaluate(&self) -> [(Vec<f64>, Vec<f64>); 2];
    fn checkpoints(&self, which: &[(usize, Position)]) -> Vec<Vec<u8>>;
}

struct BurnEngine<'a, B: Backend> {
    trainer: PackedTrainer<B>,
    data: &'a DeviceData<B>,
}

impl<B: Backend> Engine for BurnEngine<'_, B> {
    fn resume(&mut self, bytes: &[u8]) -> Result<Position, WorkerError> {
        self.trainer.resume(bytes)
    }
    fn steps(&self) -> u64 {
        self.trainer.steps()
    }
    fn train_epoch(
        &mut self,
        epoch: usize,
        trace_steps: usize,
        on_step: &mut dyn FnMut(usize, u64, f64),
    ) -> (Vec<f64>, Vec<f64>, f64) {
        self.trainer
            .train_epoch(self.data, epoch, trace_steps, on_step)
    }
    fn evaluate(&self) -> [(Vec<f64>, Vec<f64>); 2] {
        [
            self.trainer
                .evaluate(self.data.val.as_ref().unwrap_or(&self.data.train)),
            self.trainer.evaluate(&self.data.test),
        ]
    }
    fn checkpoints(&self, which: &[(usize, Position)]) -> Vec<Vec<u8>> {
        self.trainer.checkpoints(which)
    }
}

struct CpuEngine<'a> {
    pack: CpuPack,
    data: &'a Prepared,
}

impl Engine for CpuEngine<'_> {
    fn resume(&mut self, bytes: &[u8]) -> Result<Position, WorkerError> {
        self.pack.resume(bytes)
    }
    fn steps(&self) -> u64 {
        self.pack.steps()
    }
    fn train_epoch(
        &mut self,
        epoch: usize,
        trace_steps: usize,
        on_step: &mut dyn FnMut(usize, u64, f64),
    ) -> (Vec<f64>, Vec<f64>, f64) {
        let start = Instant::now();
        let (loss, acc) = self
            .pack
            .train_epoch(&self.data.train, epoch, trace_steps, on_step);
        (loss, acc, start.elapsed().as_secs_f64())
    }
    fn evaluate(&self) -> [(Vec<f64>, Vec<f64>); 2] {
        [
            self.pack.evaluate(self.data.validation().0),
            self.pack.evaluate(&self.data.test),
        ]
    }
    fn checkpoints(&self, which: &[(usize, Position)]) -> Vec<Vec<u8>> {
        self.pack.checkpoints(which)
    }
}

/// The epoch loop of a pack, whatever its engine: metrics per trial and epoch, the best epoch,
/// divergence, stops and checkpoints.
fn run_pack(
    mut trainer: impl Engine,
    data: &Prepared,
    configs: &[Hyperparameters],
    options: &RunOptions,
    observe: &mut dyn FnMut(usize, Progress<'_>) -> ControlFlow<String>,
) -> Result<Vec<Result<Summary, WorkerError>>, WorkerError> {
    let val_kind = data.validation().1;
    let mut trials: Vec<TrialRun> = configs
        .iter()
        .map(|_| TrialRun::Running {
            best: None,
            last_test_acc: 0.0,
        })
        .collect();
    let mut first_epoch = 0;
    if let Some(state) = &options.resume {
        match trainer.resume(state) {
            Ok(position) => {
                trials[0] = TrialRun::Running {
                    best: Some(position.best),
                    last_test_acc: position.last_test_acc,
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
        if trials.iter().all(|t| matches!(t, TrialRun::Ended(_))) {
            break;
        }
        let mut stops: Vec<Option<String>> = vec![None; configs.len()];
        let mut on_step = |trial: usize, step: u64, loss: f64| {
            if matches!(trials[trial], TrialRun::Running { .. })
                && let ControlFlow::Break(reason) = observe(
                    trial,
                    Progress::Step {
                        step: step as usize,
                        loss,
                    },
                )
            {
                stops[trial].get_or_insert(reason);
            }
        };
        let (train_loss, train_acc, seconds) =
            trainer.train_epoch(epoch, options.trace_steps, &mut on_step);
        let [(val_loss, val_acc), (test_loss, test_acc)] = trainer.evaluate();
        let number = epoch as u32 + 1;
        let mut to_save = Vec::new();
        for (trial, run) in trials.iter_mut().enumerate() {
            let TrialRun::Running {
                best,
                last_test_acc,
            } = run
            else {
                continue;
            };
            let config = &configs[trial];
            let metrics = EpochMetrics {
                epoch: number,
                lr: cosine_lr(config.learning_rate, epoch, epochs),
                train_loss: train_loss[trial],
                train_acc: train_acc[trial],
                val_loss: val_loss[trial],
                val_acc: val_acc[trial],
                test_loss: test_loss[trial],
                test_acc: test_acc[trial],
                seconds,
                samples_per_second: train_rows / seconds.max(1e-9),
            };
            // A trial whose numbers are no longer numbers has diverged; the rest go on.
            if let Err(e) = metrics.check() {
                *run = TrialRun::Ended(Err(WorkerError::Diverged {
                    epoch: number,
                    what: e.to_string(),
                }));
                continue;
            }
            *last_test_acc = test_acc[trial];
            if best.is_none_or(|(best_loss, _, _)| val_loss[trial] < best_loss) {
                *best = Some((val_loss[trial], number, test_acc[trial]));
            }
            if let ControlFlow::Break(reason) = observe(trial, Progress::Epoch(&metrics)) {
                stops[trial].get_or_insert(reason);
            }
            if let Some(reason) = stops[trial].take() {
                *run = TrialRun::Ended(Err(WorkerError::Stopped(reason)));
                continue;
            }
            if number == config.max_epochs {
                let (_, best_epoch, best_test_acc) = best.expect("set above");
                *run = TrialRun::Ended(Ok(Summary {
                    params: config.model.param_count(),
                    epochs: config.max_epochs,
                    test_acc: test_acc[trial],
                    best_epoch,
                    best_test_acc,
                    val: val_kind,
                }));
            } else if options.checkpoints {
                to_save.push((
                    trial,
                    Position {
                        epoch: number,
                        steps: trainer.steps(),
                        best: best.expect("set above"),
                        last_test_acc: *last_test_acc,
                    },
                ));
            }
        }
        if !to_save.is_empty() {
            for ((trial, position), state) in to_save.iter().zip(trainer.checkpoints(&to_save)) {
                if let ControlFlow::Break(reason) = observe(
                    *trial,
                    Progress::Checkpoint {
                        epoch: position.epoch,
                        state,
                    },
                ) {
                    trials[*trial] = TrialRun::Ended(Err(WorkerError::Stopped(reason)));
                }
            }
        }
    }
    Ok(trials
        .into_iter()
        .map(|t| match t {
            TrialRun::Ended(outcome) => outcome,
            TrialRun::Running { .. } => Err(WorkerError::Stopped(
                "the pack ended before this trial did".into(),
            )),
        })
        .collect())
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

#[cfg(test)]
#[path = "packed_tests.rs"]
mod tests;
