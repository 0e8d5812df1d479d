//! Training: MASE's `ch train` recipe, for K trials at once.
//!
//! Adam (β 0.9/0.999, ε 1e-8, no weight decay), cosine learning-rate decay stepped once per epoch
//! (T_max = max_epochs, η_min = 1e-6), cross-entropy (mean over the batch) on the ReLU'd logits,
//! a fresh shuffle every epoch with the last partial batch kept. After each epoch every trial is
//! evaluated (running BatchNorm statistics) on the validation data (the training split, as MASE,
//! unless a held-out split exists) and on the test split.
//!
//! The parts:
//! - [`recipe`]: the recipe's constants and the cosine schedule, once.
//! - [`epochs`]: the one epoch loop (metrics, divergence, best epoch, per-lane stop, checkpoints,
//!   progress) over an `Engine`.
//! - `engine/`: the engines — `loops` (plain CPU loops; what a CPU worker runs), `tensor` (burn
//!   tensors, any backend; what a GPU worker runs), `autodiff` (burn's autodiff and optimizer, one
//!   trial; the reference the other two are tested against step by step), and `state` (the packed
//!   engines' state laid out flat).
//! - [`checkpoint`]: a trial's state between epochs as bytes; the format only.
//!
//! The entry points below pick an engine and run the loop; metrics leave through the `observe`
//! callback, which can also stop a trial.

use std::ops::ControlFlow;

use burn::tensor::backend::{AutodiffBackend, Backend};
use jetsweep_data::{Prepared, ValidationKind};
use jetsweep_proto::metrics::{EpochMetrics, TrialResult};
use jetsweep_proto::trial::Hyperparameters;
use serde::Serialize;

use crate::error::WorkerError;

pub mod checkpoint;
mod engine;
pub mod epochs;
pub mod recipe;

pub use engine::tensor::DeviceData;
pub use epochs::packs;

/// The trial's outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub params: usize,
    pub epochs: u32,
    /// Test accuracy after the last epoch.
    pub test_acc: f64,
    /// The epoch with the lowest validation loss, and the test accuracy there (MASE's `best.ckpt`).
    pub best_epoch: u32,
    pub best_test_acc: f64,
    /// What the validation numbers were computed on.
    pub val: ValidationKind,
    /// The weights of the best and the last epoch (with [`RunOptions::checkpoints`]).
    #[serde(skip)]
    pub weights: KeptWeights,
}

/// A finished trial's weights: after its best epoch (lowest validation loss) and after its last.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeptWeights {
    pub best: Option<jetsweep_proto::weights::ModelWeights>,
    pub last: Option<jetsweep_proto::weights::ModelWeights>,
}

impl Summary {
    /// The outcome as the coordinator stores it.
    pub fn result(&self) -> TrialResult {
        TrialResult {
            params: self.params as u64,
            test_acc: self.test_acc,
            best_epoch: self.best_epoch,
            best_test_acc: self.best_test_acc,
        }
    }
}

/// How a trial is run, beyond its hyperparameters.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Report the loss of the first this many optimizer steps ([`Progress::Step`]; of each trial,
    /// in a pack).
    pub trace_steps: usize,
    /// Start from this state (saved after some epoch by a run of the same trial, by any engine)
    /// instead of from scratch; only a single trial (a pack of one) can. State that does not fit
    /// the trial is reported ([`Progress::Resumed`]) and the run starts from scratch.
    pub resume: Option<Vec<u8>>,
    /// Save the state after every epoch but the last ([`Progress::Checkpoint`]), and keep the
    /// weights of the best and the last epoch in each trial's [`Summary`] (the agent asks for both
    /// when the model's state fits a report).
    pub checkpoints: bool,
}

/// What the loop reports as it goes.
#[derive(Debug)]
pub enum Progress<'a> {
    /// The loss of one optimizer step; emitted for the first `trace_steps` steps only.
    Step {
        step: usize,
        loss: f64,
    },
    /// Whether the state in [`RunOptions::resume`] was taken (the epoch it resumes after) or not.
    Resumed(Result<u32, &'a WorkerError>),
    Epoch(&'a EpochMetrics),
    /// The state after `epoch` (see [`checkpoint`]), right after that epoch's metrics.
    Checkpoint {
        epoch: u32,
        state: Vec<u8>,
    },
}

/// Each trial's outcome, in order, or an error for the whole pack when it cannot start (trials
/// that do not pack together, an empty split, saved state for more than one trial).
pub type PackOutcomes = Result<Vec<Result<Summary, WorkerError>>, WorkerError>;

/// Trains `configs` as one pack on the CPU with the loop engine: the computation of the tensor
/// engine, several times faster on one core for models this small. From scratch, or a pack of one
/// from [`RunOptions::resume`]. Each trial's epochs are reported through `observe(trial,
/// progress)`; `observe` returning `Break(reason)` stops that trial (the others go on); a trial
/// that diverges ends with [`WorkerError::Diverged`] and the others go on.
pub fn train_pack_cpu(
    data: &Prepared,
    configs: &[Hyperparameters],
    options: &RunOptions,
    observe: &mut dyn FnMut(usize, Progress<'_>) -> ControlFlow<String>,
) -> PackOutcomes {
    epochs::check(data, configs, options)?;
    let engine = engine::loops::LoopEngine::new(configs.to_vec(), data)?;
    Ok(epochs::run(engine, data, configs, options, observe))
}

/// [`train_pack_cpu`] with the tensor engine on `device`, with `data` already uploaded there as
/// `on_device`: a worker uploads its dataset once, whatever number of packs it trains on it.
pub fn train_pack_tensors<B: Backend>(
    data: &Prepared,
    on_device: &DeviceData<B>,
    configs: &[Hyperparameters],
    device: &B::Device,
    options: &RunOptions,
    observe: &mut dyn FnMut(usize, Progress<'_>) -> ControlFlow<String>,
) -> PackOutcomes {
    epochs::check(data, configs, options)?;
    let engine = engine::tensor::TensorEngine::new(configs.to_vec(), on_device, device.clone())?;
    Ok(epochs::run(engine, data, configs, options, observe))
}

/// Trains one trial with burn's autodiff and optimizer: the reference the packed engines are
/// checked against. `observe` returning `Break(reason)` stops it with [`WorkerError::Stopped`].
pub fn train_autodiff<B: AutodiffBackend>(
    data: &Prepared,
    config: &Hyperparameters,
    device: &B::Device,
    options: &RunOptions,
    observe: &mut dyn FnMut(Progress<'_>) -> ControlFlow<String>,
) -> Result<Summary, WorkerError> {
    let configs = std::slice::from_ref(config);
    epochs::check(data, configs, options)?;
    let engine = engine::autodiff::AutodiffEngine::<B>::new(config.clone(), data, device.clone())?;
    epochs::run(engine, data, configs, options, &mut |_, p| observe(p))
        .pop()
        .expect("one outcome per trial")
}

#[cfg(test)]
mod engine_tests;
#[cfg(test)]
mod tests;
