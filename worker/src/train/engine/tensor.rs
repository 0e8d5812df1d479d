//! The packed trainer on tensors (any burn backend; what a GPU worker runs): K trials as one
//! stacked computation.
//!
//! Every tensor carries the trial on its leading axis: a batch is `[K, features, batch]`
//! (feature-major, so per-trial statistics broadcast along rows), each trial gathering its own rows;
//! a layer's weight is `[K, in, out]` and the layer a batched matmul. Nothing mixes trials, so each
//! trial computes what it would alone (up to float rounding in a different summation order) and a
//! trial whose numbers become NaN harms no other.
//!
//! The per-step work is written out: forward, the gradient of cross-entropy through ReLU, Linear and
//! BatchNorm by hand (no autodiff graph), and one Adam update over all parameters of all trials at
//! once (parameters live in one `[K, P]` tensor, Adam's moments beside it). BatchNorm's running
//! statistics are plain tensors updated once per step. That is a few dozen tensor operations per
//! step whatever K is, against a few hundred with burn's autodiff and optimizer
//! (worker/docs/speed.md).
//!
//! The dataset is uploaded to the device once; each epoch uploads the K shuffles, and each step
//! selects its rows on the device: no host round trip per step. Losses and accuracies are summed on
//! the device and read once per epoch.

use burn::tensor::activation::relu;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use jetsweep_data::batch::{batch_ranges, epoch_order};
use jetsweep_data::{NUM_CLASSES, NUM_FEATURES, Prepared, Split};
use jetsweep_proto::trial::Hyperparameters;

use super::state::{self, HostState, Layout, NormSlots, Slot, StageSlots};
use crate::error::WorkerError;
use crate::train::checkpoint::{Position, Saved};
use crate::train::epochs::{Engine, LaneMeans};
use crate::train::recipe::{
    ADAM_BETA1, ADAM_BETA2, ADAM_EPSILON, BN_EPSILON, BN_MOMENTUM, cosine_lr,
};

/// Columns per evaluation chunk: each chunk is one forward pass of all K trials.
const EVAL_COLUMNS: usize = 1024;

/// One split on the device, feature-major in chunks for evaluation (features `[16, c]`, one-hot
/// labels `[5, c]`), and, for the split gathered from on the device, row-major too (`[n, 16]`,
/// `[n, 5]`).
pub(crate) struct DeviceSplit<B: Backend> {
    chunks: Vec<(Tensor<B, 2>, Tensor<B, 2>)>,
    rows_for_gather: Option<(Tensor<B, 2>, Tensor<B, 2>)>,
    rows: usize,
}

impl<B: Backend> DeviceSplit<B> {
    fn upload(split: &Split, device: &B::Device, for_gather: bool) -> Self {
        let rows = split.len();
        let mut chunks = Vec::with_capacity(rows.div_ceil(EVAL_COLUMNS));
        let mut start = 0;
        while start < rows {
            let c = EVAL_COLUMNS.min(rows - start);
            let mut x = vec![0f32; NUM_FEATURES * c];
            let mut onehot = vec![0f32; NUM_CLASSES * c];
            for j in 0..c {
                let r = start + j;
                for (f, v) in split.x[r * NUM_FEATURES..][..NUM_FEATURES]
                    .iter()
                    .enumerate()
                {
                    x[f * c + j] = *v;
                }
                onehot[usize::from(split.y[r]) * c + j] = 1.0;
            }
            chunks.push((
                Tensor::from_data(TensorData::new(x, [NUM_FEATURES, c]), device),
                Tensor::from_data(TensorData::new(onehot, [NUM_CLASSES, c]), device),
            ));
            start += c;
        }
        let rows_for_gather = for_gather.then(|| {
            let mut onehot = vec![0f32; rows * NUM_CLASSES];
            for (r, &y) in split.y.iter().enumerate() {
                onehot[r * NUM_CLASSES + usize::from(y)] = 1.0;
            }
            (
                Tensor::from_data(
                    TensorData::new(split.x.clone(), [rows, NUM_FEATURES]),
                    device,
                ),
                Tensor::from_data(TensorData::new(onehot, [rows, NUM_CLASSES]), device),
            )
        });
        DeviceSplit {
            chunks,
            rows_for_gather,
            rows,
        }
    }
}

/// The dataset on the device, uploaded once: each split feature-major for evaluation, and the
/// training split row-major as well, for each step to select its rows from.
pub struct DeviceData<B: Backend> {
    pub(super) train: DeviceSplit<B>,
    /// `None`: the training split doubles as validation (MASE's way).
    pub(super) val: Option<DeviceSplit<B>>,
    pub(super) test: DeviceSplit<B>,
}

impl<B: Backend> DeviceData<B> {
    pub fn upload(data: &Prepared, device: &B::Device) -> Self {
        DeviceData {
            train: DeviceSplit::upload(&data.train, device, true),
            val: data
                .val
                .as_ref()
                .map(|v| DeviceSplit::upload(v, device, false)),
            test: DeviceSplit::upload(&data.test, device, false),
        }
    }
}

/// What a training step keeps for its backward pass, per BatchNorm.
struct NormCache<B: Backend> {
    normalised: Tensor<B, 3>,
    std: Tensor<B, 3>,
    gamma: Tensor<B, 3>,
}

/// What a training step keeps for its backward pass, per stage.
struct StageCache<B: Backend> {
    input: Tensor<B, 3>,
    weight: Tensor<B, 3>,
    norm: Option<NormCache<B>>,
    output: Tensor<B, 3>,
}

/// K trials' parameters, Adam state and BatchNorm statistics, stepping through epochs together on
/// `data`.
pub(crate) struct TensorEngine<'a, B: Backend> {
    configs: Vec<Hyperparameters>,
    data: &'a DeviceData<B>,
    layout: Layout,
    device: B::Device,
    /// `[K, P]`: each trial's parameters in one row.
    params: Tensor<B, 2>,
    /// Adam's first and second moments, `[K, P]`.
    moment1: Tensor<B, 2>,
    moment2: Tensor<B, 2>,
    /// Per BatchNorm: running mean and variance, `[K, F, 1]`.
    running: Vec<(Tensor<B, 3>, Tensor<B, 3>)>,
    /// Optimizer steps taken (the same for every trial of the pack).
    steps: u64,
    /// Each trial's weight decay, `[K, 1]`; `None` when no trial of the pack decays.
    weight_decay: Option<Tensor<B, 2>>,
}

impl<'a, B: Backend> TensorEngine<'a, B> {
    /// A pack of `configs` (at least one; all must pack together), each initialised from its seed
    /// exactly as [`model::init`] does.
    pub fn new(
        configs: Vec<Hyperparameters>,
        data: &'a DeviceData<B>,
        device: B::Device,
    ) -> Result<Self, WorkerError> {
        state::check(&configs)?;
        let first = &configs[0];
        let layout = Layout::of(&first.model);
        let states = state::initial(&configs, &layout);
        let weight_decay = configs.iter().any(|c| c.weight_decay != 0.0).then(|| {
            let decays: Vec<f32> = configs.iter().map(|c| c.weight_decay as f32).collect();
            Tensor::from_data(TensorData::new(decays, [configs.len(), 1]), &device)
        });
        let mut trainer = TensorEngine {
            weight_decay,
            configs,
            data,
            layout,
            params: Tensor::zeros([1, 1], &device),
            moment1: Tensor::zeros([1, 1], &device),
            moment2: Tensor::zeros([1, 1], &device),
            running: Vec::new(),
            device,
            steps: 0,
        };
        trainer.set_state(&states)?;
        Ok(trainer)
    }

    /// Puts every trial's state (one [`Saved`] per trial, all after the same number of steps) in
    /// place. Checks every length against the model; on an error nothing is changed.
    fn set_state(&mut self, states: &[Saved]) -> Result<(), WorkerError> {
        let state = HostState::from_saved(&self.layout, states)?;
        let (k, width) = (states.len(), self.layout.width);
        let device = &self.device;
        let norms = self.layout.norms();
        self.params = Tensor::from_data(TensorData::new(state.params, [k, width]), device);
        self.moment1 = Tensor::from_data(TensorData::new(state.moment1, [k, width]), device);
        self.moment2 = Tensor::from_data(TensorData::new(state.moment2, [k, width]), device);
        self.running = state
            .running
            .into_iter()
            .zip(&norms)
            .map(|((mean, var), n)| {
                (
                    Tensor::from_data(TensorData::new(mean, [k, n.features, 1]), device),
                    Tensor::from_data(TensorData::new(var, [k, n.features, 1]), device),
                )
            })
            .collect();
        self.steps = state.steps;
        Ok(())
    }

    /// A parameter of every trial: a vector as `[K, n, 1]` (one value per feature row), a weight as
    /// `[K, in, out]`.
    fn param(&self, slot: &Slot) -> Tensor<B, 3> {
        let k = self.configs.len();
        let shape = match slot.dims.as_slice() {
            [n] => [k, *n, 1],
            [i, o] => [k, *i, *o],
            other => unreachable!("parameters are vectors or matrices, not {other:?}"),
        };
        self.params
            .clone()
            .slice([0..k, slot.range()])
            .reshape(shape)
    }

    /// BatchNorm with batch statistics over the batch axis of `[K, F, batch]`, updating the running
    /// ones.
    fn norm_train(
        &mut self,
        x: Tensor<B, 3>,
        slots: &NormSlots,
        index: usize,
    ) -> (Tensor<B, 3>, NormCache<B>) {
        let batch = x.dims()[2];
        let mean = x.clone().mean_dim(2);
        let centered = x - mean.clone();
        let var = centered.clone().square().mean_dim(2);
        if batch > 1 {
            let unbiased = batch as f64 / (batch - 1) as f64;
            let (rm, rv) = &mut self.running[index];
            *rm = rm.clone().mul_scalar(1.0 - BN_MOMENTUM) + mean.mul_scalar(BN_MOMENTUM);
            *rv = rv.clone().mul_scalar(1.0 - BN_MOMENTUM)
                + var.clone().mul_scalar(BN_MOMENTUM * unbiased);
        }
        let std = var.add_scalar(BN_EPSILON).sqrt();
        let normalised = centered / std.clone();
        let gamma = self.param(&slots.gamma);
        let out = normalised.clone() * gamma.clone() + self.param(&slots.beta);
        (
            out,
            NormCache {
                normalised,
                std,
                gamma,
            },
        )
    }

    /// `[K, in, n]` → `[K, out, n]`: `Wᵀ a + b` per trial.
    fn linear(&self, a: Tensor<B, 3>, weight: Tensor<B, 3>, stage: &StageSlots) -> Tensor<B, 3> {
        weight.swap_dims(1, 2).matmul(a) + self.param(&stage.bias)
    }

    /// One optimizer step of every trial on its batch `x` `[K, 16, b]` (feature-major: per-trial
    /// statistics then broadcast along rows, which the CPU backend vectorises) with one-hot labels
    /// `[K, 5, b]` at learning rates `lr` `[K, 1]`. Returns each trial's summed loss and number of
    /// correct predictions over the batch, `[K, 1, 1]` each, still on the device.
    fn step(
        &mut self,
        x: Tensor<B, 3>,
        onehot: Tensor<B, 3>,
        lr: &Tensor<B, 2>,
    ) -> (Tensor<B, 3>, Tensor<B, 3>) {
        let batch = x.dims()[2];
        let layout = self.layout.clone();
        // Forward, keeping what the backward pass needs.
        let (normalised_input, input_cache) = self.norm_train(x, &layout.input_norm, 0);
        let mut a = relu(normalised_input);
        let mut caches: Vec<StageCache<B>> = Vec::with_capacity(layout.stages.len());
        let mut norm_index = 1;
        for stage in &layout.stages {
            let weight = self.param(&stage.weight);
            let mut z = self.linear(a.clone(), weight.clone(), stage);
            let mut norm = None;
            if let Some(n) = &stage.norm {
                let (out, cache) = self.norm_train(z, n, norm_index);
                norm_index += 1;
                z = out;
                norm = Some(cache);
            }
            let output = relu(z);
            caches.push(StageCache {
                input: a,
                weight,
                norm,
                output: output.clone(),
            });
            a = output;
        }
        let logits = a;
        let (log_probs, probs) = log_softmax_classes(logits.clone());
        let (loss_sum, correct) = loss_and_correct(log_probs, logits, &onehot);

        // Backward: d(mean cross-entropy)/d(logits) = (softmax − onehot) / batch, per trial.
        let mut grad = (probs - onehot).mul_scalar(1.0 / batch as f64);
        let mut grads: Vec<Tensor<B, 3>> = Vec::with_capacity(layout.params().len());
        for cache in caches.into_iter().rev() {
            // Through the ReLU (its input was positive where its output is).
            grad = grad.mask_fill(cache.output.lower_equal_elem(0.0), 0.0);
            if let Some(norm) = cache.norm {
                let (g_in, g_gamma, g_beta) = norm_backward(grad, norm);
                grads.push(g_beta);
                grads.push(g_gamma);
                grad = g_in;
            }
            grads.push(grad.clone().sum_dim(2)); // bias [K, out, 1]
            // weight [K, in, out] = a [K, in, b] · gradᵀ [K, b, out]
            grads.push(cache.input.clone().matmul(grad.clone().swap_dims(1, 2)));
            // Into the stage's input, through the ReLU that made it.
            grad = cache
                .weight
                .matmul(grad)
                .mask_fill(cache.input.lower_equal_elem(0.0), 0.0);
        }
        // The input BatchNorm: only its γ and β need gradients.
        grads.push(grad.clone().sum_dim(2));
        grads.push((grad * input_cache.normalised).sum_dim(2));
        grads.reverse();

        let k = self.configs.len();
        let flat: Vec<Tensor<B, 2>> = grads
            .into_iter()
            .map(|g| {
                let n = g.dims()[1] * g.dims()[2];
                g.reshape([k, n])
            })
            .collect();
        let grad = Tensor::cat(flat, 1);
        self.adam(grad, lr);
        (loss_sum, correct)
    }

    /// Adam (burn's arithmetic, ε 1e-8) over every parameter of every trial; each trial's weight
    /// decay adds `wd · p` to its gradients first (burn's and PyTorch's order: `p · wd + g`).
    fn adam(&mut self, grad: Tensor<B, 2>, lr: &Tensor<B, 2>) {
        let grad = match &self.weight_decay {
            Some(wd) => self.params.clone() * wd.clone() + grad,
            None => grad,
        };
        self.steps += 1;
        let time = self.steps.min(i32::MAX as u64) as i32;
        self.moment1 =
            self.moment1.clone().mul_scalar(ADAM_BETA1) + grad.clone().mul_scalar(1.0 - ADAM_BETA1);
        self.moment2 = self.moment2.clone().mul_scalar(ADAM_BETA2)
            + grad.square().mul_scalar(1.0 - ADAM_BETA2);
        let bias_correction2_sqrt = (1.0 - ADAM_BETA2.powi(time)).sqrt();
        let combined = bias_correction2_sqrt / (1.0 - ADAM_BETA1.powi(time));
        let delta = self.moment1.clone().mul_scalar(combined).div(
            self.moment2
                .clone()
                .sqrt()
                .add_scalar(ADAM_EPSILON * bias_correction2_sqrt),
        );
        self.params = self.params.clone() - delta * lr.clone();
    }

    /// One pass over the training split, each trial in its own order for `epoch` (0-based).
    /// `on_step` gets each trial's loss for the run's first `trace_steps` steps. Returns each trial's
    /// mean loss and accuracy, read back from the device (so all the work is done).
    fn train_split(
        &mut self,
        epoch: usize,
        trace_steps: usize,
        on_step: &mut dyn FnMut(usize, u64, f64),
    ) -> (Vec<f64>, Vec<f64>) {
        let data = self.data;
        let k = self.configs.len();
        let rows = data.train.rows;
        let max_epochs = self.configs[0].max_epochs as usize;
        let batch_size = self.configs[0].batch_size as usize;
        let lrs: Vec<f32> = self
            .configs
            .iter()
            .map(|c| cosine_lr(c.learning_rate, epoch, max_epochs) as f32)
            .collect();
        let lr = Tensor::<B, 2>::from_data(TensorData::new(lrs, [k, 1]), &self.device);
        let mut order = Vec::with_capacity(k * rows);
        for c in &self.configs {
            order.extend(epoch_order(rows, c.seed, epoch).into_iter().map(i64::from));
        }
        let order = Tensor::<B, 2, Int>::from_data(TensorData::new(order, [k, rows]), &self.device);
        let (x_rows, onehot_rows) = data
            .train
            .rows_for_gather
            .as_ref()
            .expect("the training split is uploaded row-major");
        let mut sums = Sums::default();
        for range in batch_ranges(rows, batch_size) {
            let b = range.len();
            let index = order.clone().slice([0..k, range]).reshape([k * b]);
            let x = x_rows
                .clone()
                .select(0, index.clone())
                .reshape([k, b, NUM_FEATURES])
                .swap_dims(1, 2);
            let onehot = onehot_rows
                .clone()
                .select(0, index)
                .reshape([k, b, NUM_CLASSES])
                .swap_dims(1, 2);
            let (x, onehot) = (contiguous(x), contiguous(onehot));
            let (loss, correct) = self.step(x, onehot, &lr);
            if self.steps <= trace_steps as u64 {
                for (trial, l) in host(loss.clone()).into_iter().enumerate() {
                    on_step(trial, self.steps - 1, f64::from(l) / b as f64);
                }
            }
            sums.add(loss, correct);
        }
        // Reading the sums waits for the device, so the loop's time covers all the work.
        sums.means(k, rows)
    }

    /// Each trial's mean loss and accuracy over `split` (running BatchNorm statistics): each
    /// chunk of rows is one forward pass of all K trials, the chunk repeated per trial.
    fn evaluate_split(&self, split: &DeviceSplit<B>) -> (Vec<f64>, Vec<f64>) {
        let k = self.configs.len();
        let mut sums = Sums::default();
        for (x, onehot) in &split.chunks {
            let [features, c] = x.dims();
            let x = x.clone().reshape([1, features, c]).repeat_dim(0, k);
            let onehot = onehot.clone().reshape([1, NUM_CLASSES, c]).repeat_dim(0, k);
            let logits = self.forward_eval(x);
            let (log_probs, _) = log_softmax_classes(logits.clone());
            let (loss, correct) = loss_and_correct(log_probs, logits, &onehot);
            sums.add(loss, correct);
        }
        sums.means(k, split.rows)
    }

    /// BatchNorm with the running statistics (inference), on `[K, F, n]`.
    fn norm_eval(&self, x: Tensor<B, 3>, slots: &NormSlots, index: usize) -> Tensor<B, 3> {
        let (mean, var) = &self.running[index];
        let std = var.clone().add_scalar(BN_EPSILON).sqrt();
        (x - mean.clone()) / std * self.param(&slots.gamma) + self.param(&slots.beta)
    }

    /// The ReLU'd logits `[K, 5, n]` of `x` `[K, 16, n]` with running statistics.
    fn forward_eval(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let mut a = relu(self.norm_eval(x, &self.layout.input_norm, 0));
        let mut norm_index = 1;
        for stage in &self.layout.stages {
            let mut z = self.linear(a, self.param(&stage.weight), stage);
            if let Some(n) = &stage.norm {
                z = self.norm_eval(z, n, norm_index);
                norm_index += 1;
            }
            a = relu(z);
        }
        a
    }
}

impl<B: Backend> Engine for TensorEngine<'_, B> {
    fn steps(&self) -> u64 {
        self.steps
    }

    fn resume(&mut self, saved: Saved) -> Result<(), WorkerError> {
        self.set_state(&[saved])
    }

    fn train_epoch(
        &mut self,
        epoch: usize,
        trace_steps: usize,
        on_step: &mut dyn FnMut(usize, u64, f64),
    ) -> LaneMeans {
        self.train_split(epoch, trace_steps, on_step).into()
    }

    fn evaluate(&self) -> [LaneMeans; 2] {
        let val = self.data.val.as_ref().unwrap_or(&self.data.train);
        [val, &self.data.test].map(|split| self.evaluate_split(split).into())
    }

    /// Each asked trial's state after an epoch, in the checkpoint format of the unpacked trainer
    /// (either trainer resumes from the other's state), reading the device once.
    fn checkpoints(&self, which: &[(usize, Position)]) -> Vec<Vec<u8>> {
        let state = HostState {
            params: host(self.params.clone()),
            moment1: host(self.moment1.clone()),
            moment2: host(self.moment2.clone()),
            running: self
                .running
                .iter()
                .map(|(m, v)| (host(m.clone()), host(v.clone())))
                .collect(),
            steps: self.steps,
        };
        which
            .iter()
            .map(|&(trial, position)| state.checkpoint(&self.layout, trial, position))
            .collect()
    }
}

/// Log-softmax over the classes (axis 1) of `[K, 5, n]`. The per-row maximum and normaliser are
/// repeated over the classes before they are subtracted, so every elementwise operation combines
/// tensors of one shape (the CPU backend's vectorised path; broadcasting along a middle axis is
/// not). Returns the log-probabilities and the probabilities (softmax), from one `exp`.
fn log_softmax_classes<B: Backend>(logits: Tensor<B, 3>) -> (Tensor<B, 3>, Tensor<B, 3>) {
    let classes = logits.dims()[1];
    let shifted = logits.clone() - logits.max_dim(1).repeat_dim(1, classes);
    let exp = shifted.clone().exp();
    let total = exp.clone().sum_dim(1);
    let log_probs = shifted - total.clone().log().repeat_dim(1, classes);
    (log_probs, exp / total.repeat_dim(1, classes))
}

/// Each trial's summed cross-entropy and number of correct predictions, `[K, 1, 1]`, from
/// log-probabilities and logits `[K, 5, n]` against one-hot labels `[K, 5, n]`.
fn loss_and_correct<B: Backend>(
    log_probs: Tensor<B, 3>,
    logits: Tensor<B, 3>,
    onehot: &Tensor<B, 3>,
) -> (Tensor<B, 3>, Tensor<B, 3>) {
    let loss = (log_probs * onehot.clone()).sum_dim(1).sum_dim(2).neg();
    let correct = onehot.clone().gather(1, logits.argmax(1)).sum_dim(2);
    (loss, correct)
}

/// Gradients of BatchNorm (batch statistics) given the gradient of its output: into its input, γ
/// and β.
fn norm_backward<B: Backend>(
    grad: Tensor<B, 3>,
    cache: NormCache<B>,
) -> (Tensor<B, 3>, Tensor<B, 3>, Tensor<B, 3>) {
    let NormCache {
        normalised,
        std,
        gamma,
    } = cache;
    let g_beta = grad.clone().sum_dim(2);
    let g_gamma = (grad.clone() * normalised.clone()).sum_dim(2);
    let g_normalised = grad * gamma;
    let g_in = (g_normalised.clone()
        - g_normalised.clone().mean_dim(2)
        - normalised.clone() * (g_normalised * normalised).mean_dim(2))
        / std;
    (g_in, g_gamma, g_beta)
}

/// `t` laid out row-major in memory (the CPU backend's vectorised paths want that of a tensor
/// that is combined with another elementwise).
fn contiguous<B: Backend>(t: Tensor<B, 3>) -> Tensor<B, 3> {
    t.mul_scalar(1.0)
}

/// Each trial's summed loss and correct predictions `[K, 1, 1]`, added up on the device.
struct Sums<B: Backend> {
    loss: Option<Tensor<B, 3>>,
    correct: Option<Tensor<B, 3>>,
}

impl<B: Backend> Default for Sums<B> {
    fn default() -> Self {
        Sums {
            loss: None,
            correct: None,
        }
    }
}

impl<B: Backend> Sums<B> {
    fn add(&mut self, loss: Tensor<B, 3>, correct: Tensor<B, 3>) {
        let add = |sum: Option<Tensor<B, 3>>, x: Tensor<B, 3>| {
            Some(match sum {
                Some(s) => s + x,
                None => x,
            })
        };
        self.loss = add(self.loss.take(), loss);
        self.correct = add(self.correct.take(), correct);
    }

    /// Each of the `k` trials' mean loss and accuracy over `rows` rows (reads the device).
    fn means(self, k: usize, rows: usize) -> (Vec<f64>, Vec<f64>) {
        let n = rows.max(1) as f64;
        let per_trial = |sum: Option<Tensor<B, 3>>| -> Vec<f64> {
            sum.map_or_else(
                || vec![0.0; k],
                |s| host(s).into_iter().map(|v| f64::from(v) / n).collect(),
            )
        };
        (per_trial(self.loss), per_trial(self.correct))
    }
}

fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .into_vec()
        .expect("converted to f32")
}
