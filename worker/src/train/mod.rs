//! The training loop: MASE's `ch train` recipe in burn.
//!
//! Adam (β 0.9/0.999, ε 1e-8, no weight decay), cosine learning-rate decay stepped once per epoch
//! (T_max = max_epochs, η_min = 1e-6), cross-entropy (mean over the batch) on the ReLU'd logits,
//! a fresh shuffle every epoch with the last partial batch kept. After each epoch the model is
//! evaluated (running BatchNorm statistics) on the validation data (the training split, as MASE, unless
//! a held-out split exists) and on the test split. Metrics leave through the `observe` callback, which
//! can also stop the run (a cancelled job).

use std::ops::ControlFlow;
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Int, Tensor, TensorData, activation::log_softmax};
use jetsweep_data::batch::{self, batch_ranges};
use jetsweep_data::{NUM_FEATURES, Prepared, Split, ValidationKind};
use jetsweep_proto::metrics::{EpochMetrics, TrialResult};
use jetsweep_proto::trial::{self, Hyperparameters};
use serde::Serialize;

use crate::error::WorkerError;
use crate::model::{self, Mlp};

pub mod checkpoint;
mod cpu_pack;
mod pack_state;
pub mod packed;
mod tensor_pack;

/// Floor of the cosine schedule (MASE passes eta_min=1e-6).
pub const ETA_MIN: f64 = 1e-6;
/// PyTorch's Adam ε (burn's default is 1e-5).
pub const ADAM_EPSILON: f32 = 1e-8;
/// Rows per forward pass when evaluating; large, since evaluation keeps no graph.
const EVAL_CHUNK: usize = 8192;

/// PyTorch's CosineAnnealingLR (closed form) for 0-based `epoch`.
pub fn cosine_lr(base_lr: f64, epoch: usize, max_epochs: usize) -> f64 {
    let progress = epoch as f64 / max_epochs as f64;
    ETA_MIN + (base_lr - ETA_MIN) * (1.0 + (std::f64::consts::PI * progress).cos()) / 2.0
}

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

/// Mean cross-entropy of `logits` `[n, 5]` against class indices `[n]`.
pub fn cross_entropy<B: Backend>(logits: Tensor<B, 2>, targets: Tensor<B, 1, Int>) -> Tensor<B, 1> {
    let [n, _] = logits.dims();
    log_softmax(logits, 1)
        .gather(1, targets.reshape([n, 1]))
        .mean()
        .neg()
}

fn batch_tensors<B: Backend>(
    x: &[f32],
    y: &[i32],
    device: &B::Device,
) -> (Tensor<B, 2>, Tensor<B, 1, Int>) {
    let n = y.len();
    (
        Tensor::from_data(TensorData::new(x.to_vec(), [n, NUM_FEATURES]), device),
        Tensor::from_data(TensorData::new(y.to_vec(), [n]), device),
    )
}

/// Mean loss and accuracy of `model` (inference mode) over a split.
pub fn evaluate<B: Backend>(model: &Mlp<B>, split: &Split, device: &B::Device) -> (f64, f64) {
    let (mut loss_sum, mut correct) = (0.0f64, 0i64);
    let labels: Vec<i32> = split.y.iter().map(|&y| i32::from(y)).collect();
    for (x, y) in split
        .x
        .chunks(EVAL_CHUNK * NUM_FEATURES)
        .zip(labels.chunks(EVAL_CHUNK))
    {
        let (xt, yt) = batch_tensors::<B>(x, y, device);
        let logits = model.forward(xt);
        correct += logits
            .clone()
            .argmax(1)
            .reshape([y.len()])
            .equal(yt.clone())
            .int()
            .sum()
            .into_scalar()
            .elem::<i64>();
        loss_sum += cross_entropy(logits, yt).into_scalar().elem::<f64>() * y.len() as f64;
    }
    let n = split.len().max(1) as f64;
    (loss_sum / n, correct as f64 / n)
}

/// What one pass over the training data measured (from the training-mode forward passes).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainPass {
    pub loss: f64,
    pub acc: f64,
    /// Wall time of the pass, gathering batches included.
    pub seconds: f64,
}

type Adam<B> = burn::optim::adaptor::OptimizerAdaptor<burn::optim::Adam, Mlp<B>, B>;

/// The optimizer a trial names. Every optimizer a trial may name is matched here: a new one cannot
/// be accepted by the sweep file and then ignored.
fn new_optimizer<B: AutodiffBackend>(config: &Hyperparameters) -> Adam<B> {
    match config.optimizer {
        trial::Optimizer::Adam => AdamConfig::new()
            .with_epsilon(ADAM_EPSILON)
            .init::<B, Mlp<B>>(),
    }
}

/// A model and its optimizer, stepping through epochs.
pub struct Trainer<B: AutodiffBackend> {
    config: Hyperparameters,
    device: B::Device,
    model: Option<Mlp<B>>,
    optim: Adam<B>,
    steps: usize,
    // Reused gather buffers.
    xb: Vec<f32>,
    yb: Vec<i32>,
}

impl<B: AutodiffBackend> Trainer<B> {
    pub fn new(config: Hyperparameters, device: B::Device) -> Result<Self, WorkerError> {
        config.validate()?;
        let model = model::init::<B>(&config.model, config.seed, &device);
        Ok(Trainer {
            optim: new_optimizer(&config),
            config,
            device,
            model: Some(model),
            steps: 0,
            xb: Vec::new(),
            yb: Vec::new(),
        })
    }

    /// The state after epoch `position.epoch`, as bytes (see [`checkpoint`]).
    pub fn checkpoint(&self, position: checkpoint::Position) -> Vec<u8> {
        checkpoint::save(self.model(), &self.optim, position)
    }

    /// Puts the state saved by [`Trainer::checkpoint`] back; returns where the loop stood. On an
    /// error the trainer is as new (the caller may start from epoch 0).
    pub fn resume(&mut self, bytes: &[u8]) -> Result<checkpoint::Position, WorkerError> {
        let fresh = || {
            (
                model::init::<B>(&self.config.model, self.config.seed, &self.device),
                new_optimizer::<B>(&self.config),
            )
        };
        let (model, optim) = fresh();
        let loaded = checkpoint::load(bytes, model, optim, &self.device).and_then(|loaded| {
            let epoch = loaded.2.epoch;
            if epoch == 0 || epoch >= self.config.max_epochs || loaded.2.best.1 > epoch {
                return Err(WorkerError::Checkpoint(format!(
                    "it is after epoch {epoch} (best {}) of a trial of {}",
                    loaded.2.best.1, self.config.max_epochs
                )));
            }
            Ok(loaded)
        });
        let (model, optim, position) = match loaded {
            Ok(loaded) => loaded,
            Err(e) => {
                let (model, optim) = fresh();
                self.model = Some(model);
                self.optim = optim;
                self.steps = 0;
                return Err(e);
            }
        };
        self.model = Some(model);
        self.optim = optim;
        self.steps = position.steps as usize;
        Ok(position)
    }

    pub fn steps(&self) -> u64 {
        self.steps as u64
    }

    pub fn model(&self) -> &Mlp<B> {
        self.model
            .as_ref()
            .expect("the model is only taken during a step")
    }

    /// One pass over the training split in the order of `epoch` (0-based). Calls `on_step` with the
    /// loss of each of the run's first `trace_steps` optimizer steps.
    pub fn train_epoch(
        &mut self,
        train: &Split,
        epoch: usize,
        trace_steps: usize,
        on_step: &mut dyn FnMut(usize, f64),
    ) -> TrainPass {
        let start = Instant::now();
        let lr = cosine_lr(
            self.config.learning_rate,
            epoch,
            self.config.max_epochs as usize,
        );
        let order = batch::epoch_order(train.len(), self.config.seed, epoch);
        let mut loss_sum: Option<Tensor<B::InnerBackend, 1>> = None;
        let mut correct_sum: Option<Tensor<B::InnerBackend, 1, Int>> = None;
        for range in batch_ranges(train.len(), self.config.batch_size as usize) {
            let rows = &order[range];
            batch::gather(train, rows, &mut self.xb, &mut self.yb);
            let (x, y) = batch_tensors::<B>(&self.xb, &self.yb, &self.device);
            let model = self.model.take().expect("model present between steps");
            let logits = model.forward(x);
            let loss = cross_entropy(logits.clone(), y.clone());

            let batch_loss = loss.clone().inner().mul_scalar(rows.len() as f64);
            let batch_correct = logits
                .inner()
                .argmax(1)
                .reshape([rows.len()])
                .equal(y.inner())
                .int()
                .sum();
            if self.steps < trace_steps {
                on_step(
                    self.steps,
                    batch_loss.clone().into_scalar().elem::<f64>() / rows.len() as f64,
                );
            }
            loss_sum = Some(match loss_sum {
                Some(s) => s + batch_loss,
                None => batch_loss,
            });
            correct_sum = Some(match correct_sum {
                Some(s) => s + batch_correct,
                None => batch_correct,
            });

            let grads = GradientsParams::from_grads(loss.backward(), &model);
            self.model = Some(self.optim.step(lr, model, grads));
            self.steps += 1;
        }
        // Reading the sums waits for the device, so the time below covers all the work.
        let n = train.len().max(1) as f64;
        let loss = loss_sum.map_or(0.0, |s| s.into_scalar().elem::<f64>()) / n;
        let acc = correct_sum.map_or(0, |s| s.into_scalar().elem::<i64>()) as f64 / n;
        TrainPass {
            loss,
            acc,
            seconds: start.elapsed().as_secs_f64(),
        }
    }
}

/// How a trial is run, beyond its hyperparameters.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Report the loss of the first this many optimizer steps ([`Progress::Step`]; of each trial,
    /// in a pack).
    pub trace_steps: usize,
    /// Start from this state (saved after some epoch by a run of the same trial) instead of from
    /// scratch; only a single trial (a pack of one) can. State that does not fit the trial is reported ([`Progress::Resumed`]) and the run
    /// starts from scratch.
    pub resume: Option<Vec<u8>>,
    /// Save the state after every epoch but the last ([`Progress::Checkpoint`]).
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

/// Trains one trial on `data` (from scratch, or from [`RunOptions::resume`]), reporting each epoch
/// through `observe`. `observe` returning `Break(reason)` stops the run.
pub fn train<B: AutodiffBackend>(
    data: &Prepared,
    config: &Hyperparameters,
    device: &B::Device,
    options: &RunOptions,
    observe: &mut dyn FnMut(Progress<'_>) -> ControlFlow<String>,
) -> Result<Summary, WorkerError> {
    let mut trainer = Trainer::<B>::new(config.clone(), device.clone())?;
    if data.train.is_empty() || data.test.is_empty() {
        return Err(WorkerError::Invalid(format!(
            "dataset {} has an empty train or test split",
            data.provenance.source
        )));
    }
    let (val_split, val_kind) = data.validation();
    let mut best: Option<checkpoint::Best> = None;
    let mut last_test_acc = 0.0;
    let mut stopped: Option<String> = None;
    let mut first_epoch = 0;
    if let Some(state) = &options.resume {
        match trainer.resume(state) {
            Ok(position) => {
                best = Some(position.best);
                last_test_acc = position.last_test_acc;
                first_epoch = position.epoch as usize;
                let _ = observe(Progress::Resumed(Ok(position.epoch)));
            }
            Err(e) => {
                let _ = observe(Progress::Resumed(Err(&e)));
            }
        }
    }
    let epochs = config.max_epochs as usize;
    for epoch in first_epoch..epochs {
        let lr = cosine_lr(config.learning_rate, epoch, epochs);
        let mut on_step = |step: usize, loss: f64| {
            if let ControlFlow::Break(reason) = observe(Progress::Step { step, loss }) {
                stopped.get_or_insert(reason);
            }
        };
        let pass = trainer.train_epoch(&data.train, epoch, options.trace_steps, &mut on_step);
        let eval_model = trainer.model().valid();
        let (val_loss, val_acc) = evaluate(&eval_model, val_split, device);
        let (test_loss, test_acc) = evaluate(&eval_model, &data.test, device);
        let number = epoch as u32 + 1;
        let metrics = EpochMetrics {
            epoch: number,
            lr,
            train_loss: pass.loss,
            train_acc: pass.acc,
            val_loss,
            val_acc,
            test_loss,
            test_acc,
            seconds: pass.seconds,
            samples_per_second: data.train.len() as f64 / pass.seconds.max(1e-9),
        };
        // A trial whose numbers are no longer numbers has diverged; every report would be refused.
        metrics.check().map_err(|e| WorkerError::Diverged {
            epoch: number,
            what: e.to_string(),
        })?;
        last_test_acc = test_acc;
        if best.is_none_or(|(best_loss, _, _)| val_loss < best_loss) {
            best = Some((val_loss, number, test_acc));
        }
        if let ControlFlow::Break(reason) = observe(Progress::Epoch(&metrics)) {
            stopped.get_or_insert(reason);
        }
        if let Some(reason) = stopped {
            return Err(WorkerError::Stopped(reason));
        }
        if options.checkpoints && number < config.max_epochs {
            let state = trainer.checkpoint(checkpoint::Position {
                epoch: number,
                steps: trainer.steps(),
                best: best.expect("set above"),
                last_test_acc,
            });
            if let ControlFlow::Break(reason) = observe(Progress::Checkpoint {
                epoch: number,
                state,
            }) {
                return Err(WorkerError::Stopped(reason));
            }
        }
    }
    let (_, best_epoch, best_test_acc) = best.expect("at least one epoch ran");
    Ok(Summary {
        params: config.model.param_count(),
        epochs: config.max_epochs,
        test_acc: last_test_acc,
        best_epoch,
        best_test_acc,
        val: val_kind,
    })
}

#[cfg(test)]
mod tests;
