//! The packed trainer's CPU engine: the computation of [`super::tensor::TensorEngine`] (the same
//! forward pass, the same hand-written backward pass, the same Adam arithmetic) as plain loops over
//! host arrays, one trial after another.
//!
//! Why a second engine: on one CPU core the tensor library's per-element cost dominates a model
//! this small (5- and 16-wide rows; worker/docs/speed.md), while these loops run over a batch row
//! of one feature at a time, contiguous, which the compiler vectorises. Activations are
//! feature-major (`[features][batch]`), so every loop below is a dot product or an axpy over the
//! batch. The burn engine stays the one for GPUs; both are tested against the autodiff trainer.

use jetsweep_data::batch::{batch_ranges, epoch_order_into};
use jetsweep_data::{NUM_CLASSES, NUM_FEATURES, Prepared, Split};
use jetsweep_proto::trial::Hyperparameters;

use super::state::{self, HostState, Layout, NormSlots};
use crate::error::WorkerError;
use crate::train::checkpoint::{Position, Saved};
use crate::train::epochs::{Engine, LaneMeans};
use crate::train::recipe::{self, ADAM_BETA1, ADAM_BETA2, ADAM_EPSILON, BN_MOMENTUM, cosine_lr};

/// The recipe's ε in the loops' precision.
const BN_EPSILON: f32 = recipe::BN_EPSILON as f32;
/// Rows per evaluation block (transposed to feature-major once, shared by the pack's trials).
const EVAL_BLOCK: usize = 512;

/// What one stage of the forward pass kept for the backward pass.
#[derive(Default)]
struct StageActs {
    /// The stage's output after its ReLU, `[out][b]`.
    out: Vec<f32>,
    /// Its BatchNorm's normalised input `[out][b]` and standard deviations `[out]`, if it has one.
    normalised: Vec<f32>,
    std: Vec<f32>,
}

/// Buffers of the loss: per row the largest logit, its class, `exp(z − max)` per class and row,
/// their total per row and its logarithm.
#[derive(Default)]
struct LossBuffers {
    max: Vec<f32>,
    arg: Vec<u8>,
    exp: Vec<f32>,
    total: Vec<f32>,
    log_total: Vec<f32>,
}

/// Buffers one trial's step reuses.
#[derive(Default)]
struct Scratch {
    loss: LossBuffers,
    input_normalised: Vec<f32>,
    input_std: Vec<f32>,
    /// The input BatchNorm's output after ReLU, `[16][b]`.
    input_out: Vec<f32>,
    stages: Vec<StageActs>,
    grad: Vec<f32>,
    grad_next: Vec<f32>,
    grads: Vec<f32>,
}

/// K trials' state, stepped with loops on the CPU over `data`.
pub(crate) struct LoopEngine<'a> {
    configs: Vec<Hyperparameters>,
    data: &'a Prepared,
    layout: Layout,
    state: HostState,
    scratch: Scratch,
    /// Each trial's row order of the current epoch (kept to reuse its memory).
    orders: Vec<Vec<u32>>,
}

impl<'a> LoopEngine<'a> {
    /// A pack of `configs` (at least one; all must pack together), from their seeds.
    pub fn new(configs: Vec<Hyperparameters>, data: &'a Prepared) -> Result<Self, WorkerError> {
        state::check(&configs)?;
        let layout = Layout::of(&configs[0].model);
        let state = HostState::from_saved(&layout, &state::initial(&configs, &layout))?;
        Ok(LoopEngine {
            configs,
            data,
            layout,
            state,
            scratch: Scratch::default(),
            orders: Vec::new(),
        })
    }

    /// One pass over `train`, each trial in its own order for `epoch` (0-based). `on_step` gets each
    /// trial's loss for the run's first `trace_steps` steps. Returns each trial's mean loss and
    /// accuracy.
    fn train_split(
        &mut self,
        train: &Split,
        epoch: usize,
        trace_steps: usize,
        on_step: &mut dyn FnMut(usize, u64, f64),
    ) -> (Vec<f64>, Vec<f64>) {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: this CPU has AVX2 (checked just above), all the function requires.
            return unsafe { self.train_epoch_avx2(train, epoch, trace_steps, on_step) };
        }
        self.train_epoch_loops(train, epoch, trace_steps, on_step)
    }

    /// [`LoopEngine::train_split`] compiled for AVX2: the same loops, twice as wide.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn train_epoch_avx2(
        &mut self,
        train: &Split,
        epoch: usize,
        trace_steps: usize,
        on_step: &mut dyn FnMut(usize, u64, f64),
    ) -> (Vec<f64>, Vec<f64>) {
        self.train_epoch_loops(train, epoch, trace_steps, on_step)
    }

    #[inline(always)]
    fn train_epoch_loops(
        &mut self,
        train: &Split,
        epoch: usize,
        trace_steps: usize,
        on_step: &mut dyn FnMut(usize, u64, f64),
    ) -> (Vec<f64>, Vec<f64>) {
        let k = self.configs.len();
        let rows = train.len();
        let max_epochs = self.configs[0].max_epochs as usize;
        let batch_size = self.configs[0].batch_size as usize;
        let mut orders = std::mem::take(&mut self.orders);
        orders.resize_with(k, Vec::new);
        for (order, c) in orders.iter_mut().zip(&self.configs) {
            epoch_order_into(rows, c.seed, epoch, order);
        }
        let lrs: Vec<f32> = self
            .configs
            .iter()
            .map(|c| cosine_lr(c.learning_rate, epoch, max_epochs) as f32)
            .collect();
        let (mut loss_sum, mut correct_sum) = (vec![0f64; k], vec![0f64; k]);
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for range in batch_ranges(rows, batch_size) {
            let b = range.len();
            self.state.steps += 1;
            let trace = self.state.steps <= trace_steps as u64;
            for trial in 0..k {
                gather_feature_major(train, &orders[trial][range.clone()], &mut x, &mut y);
                let (loss, correct) = self.step_trial(trial, &x, &y, lrs[trial]);
                if trace {
                    on_step(trial, self.state.steps - 1, f64::from(loss) / b as f64);
                }
                loss_sum[trial] += f64::from(loss);
                correct_sum[trial] += f64::from(correct);
            }
        }
        self.orders = orders;
        let n = rows.max(1) as f64;
        (
            loss_sum.into_iter().map(|v| v / n).collect(),
            correct_sum.into_iter().map(|v| v / n).collect(),
        )
    }

    /// One optimizer step of trial `trial` on its batch `x` (`[16][b]`) with labels `y`; returns
    /// the batch's summed loss and number of correct predictions.
    #[inline(always)]
    fn step_trial(&mut self, trial: usize, x: &[f32], y: &[u8], lr: f32) -> (f32, u32) {
        let b = y.len();
        let width = self.layout.width;
        let layout = &self.layout;
        let sc = &mut self.scratch;
        sc.stages
            .resize_with(layout.stages.len(), StageActs::default);
        let params = &self.state.params[trial * width..][..width];

        // Forward.
        let (rm, rv) = running_rows(&mut self.state.running[0], trial, NUM_FEATURES);
        norm_train(
            x,
            b,
            &layout.input_norm,
            params,
            rm,
            rv,
            &mut sc.input_normalised,
            &mut sc.input_std,
            &mut sc.input_out,
        );
        let mut norm_index = 1;
        for (s, stage) in layout.stages.iter().enumerate() {
            let (done, rest) = sc.stages.split_at_mut(s);
            let input: &[f32] = if s == 0 {
                &sc.input_out
            } else {
                &done[s - 1].out
            };
            let acts = &mut rest[0];
            let out_width = stage.bias.len();
            linear(
                input,
                b,
                &params[stage.weight.range()],
                &params[stage.bias.range()],
                out_width,
                &mut sc.grad_next, // as scratch for the pre-activation
            );
            match &stage.norm {
                Some(n) => {
                    let (rm, rv) =
                        running_rows(&mut self.state.running[norm_index], trial, n.features);
                    norm_index += 1;
                    norm_train(
                        &sc.grad_next,
                        b,
                        n,
                        params,
                        rm,
                        rv,
                        &mut acts.normalised,
                        &mut acts.std,
                        &mut acts.out,
                    );
                }
                None => {
                    acts.out.clear();
                    acts.out.extend(sc.grad_next.iter().map(|&v| relu(v)));
                }
            }
        }

        // Loss, and its gradient with respect to the logits (through the last ReLU).
        let logits = &sc.stages.last().expect("a model has stages").out;
        sc.grad.resize(NUM_CLASSES * b, 0.0);
        let (loss, correct) = cross_entropy(logits, y, &mut sc.loss, Some(&mut sc.grad));

        // Backward, stage by stage.
        // Every parameter's gradient is written below.
        sc.grads.resize(width, 0.0);
        for s in (0..layout.stages.len()).rev() {
            let stage = &layout.stages[s];
            let acts = &sc.stages[s];
            if let Some(n) = &stage.norm {
                norm_backward(
                    &mut sc.grad,
                    b,
                    &acts.normalised,
                    &acts.std,
                    &params[n.gamma.range()],
                    &mut sc.grads,
                    n,
                );
            }
            let input: &[f32] = if s == 0 {
                &sc.input_out
            } else {
                &sc.stages[s - 1].out
            };
            let (in_width, out_width) = (stage.weight.dims[0], stage.weight.dims[1]);
            // Bias and weight gradients.
            for o in 0..out_width {
                let g = &sc.grad[o * b..][..b];
                sc.grads[stage.bias.offset + o] = sum(g);
                for i in 0..in_width {
                    sc.grads[stage.weight.offset + i * out_width + o] =
                        dot(&input[i * b..][..b], g);
                }
            }
            // Into the stage's input, through the ReLU that made it.
            let weight = &params[stage.weight.range()];
            sc.grad_next.resize(in_width * b, 0.0);
            for i in 0..in_width {
                let dst = &mut sc.grad_next[i * b..][..b];
                let w = &weight[i * out_width..][..out_width];
                for (d, g) in dst.iter_mut().zip(&sc.grad[..b]) {
                    *d = w[0] * g;
                }
                for (o, &wo) in w.iter().enumerate().skip(1) {
                    axpy(dst, wo, &sc.grad[o * b..][..b]);
                }
                for (d, a) in dst.iter_mut().zip(&input[i * b..][..b]) {
                    if *a <= 0.0 {
                        *d = 0.0;
                    }
                }
            }
            std::mem::swap(&mut sc.grad, &mut sc.grad_next);
        }
        // The input BatchNorm: only its γ and β need gradients.
        let n = &layout.input_norm;
        for f in 0..NUM_FEATURES {
            let g = &sc.grad[f * b..][..b];
            sc.grads[n.beta.offset + f] = sum(g);
            sc.grads[n.gamma.offset + f] = dot(g, &sc.input_normalised[f * b..][..b]);
        }

        self.adam(trial, lr);
        (loss, correct)
    }

    /// Adam (burn's arithmetic, ε 1e-8) on trial `trial`'s parameters with the gradients in
    /// scratch; a weight decay adds `weight_decay · p` to each gradient first (PyTorch's and
    /// burn's order: `p · wd + g`).
    #[inline(always)]
    fn adam(&mut self, trial: usize, lr: f32) {
        let weight_decay = self.configs[trial].weight_decay as f32;
        let time = self.state.steps.min(i32::MAX as u64) as i32;
        let bias_correction2_sqrt = (1.0 - ADAM_BETA2.powi(time)).sqrt();
        let combined = bias_correction2_sqrt / (1.0 - ADAM_BETA1.powi(time));
        let eps = ADAM_EPSILON * bias_correction2_sqrt;
        let width = self.layout.width;
        let at = trial * width..(trial + 1) * width;
        let (p, m1, m2) = (
            &mut self.state.params[at.clone()],
            &mut self.state.moment1[at.clone()],
            &mut self.state.moment2[at],
        );
        let grads = &self.scratch.grads;
        if weight_decay == 0.0 {
            // MASE's case, without the decay's multiply-add per parameter.
            for (((p, m1), m2), &g) in p.iter_mut().zip(m1).zip(m2).zip(grads) {
                adam_update(p, m1, m2, g, combined, eps, lr);
            }
        } else {
            for (((p, m1), m2), &g) in p.iter_mut().zip(m1).zip(m2).zip(grads) {
                let g = *p * weight_decay + g;
                adam_update(p, m1, m2, g, combined, eps, lr);
            }
        }
    }

    /// Each trial's mean loss and accuracy over `split` (running BatchNorm statistics).
    fn evaluate_split(&self, split: &Split) -> (Vec<f64>, Vec<f64>) {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: this CPU has AVX2 (checked just above), all the function requires.
            return unsafe { self.evaluate_avx2(split) };
        }
        self.evaluate_loops(split)
    }

    /// [`LoopEngine::evaluate_split`] compiled for AVX2.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn evaluate_avx2(&self, split: &Split) -> (Vec<f64>, Vec<f64>) {
        self.evaluate_loops(split)
    }

    #[inline(always)]
    fn evaluate_loops(&self, split: &Split) -> (Vec<f64>, Vec<f64>) {
        let k = self.configs.len();
        let (mut loss, mut correct) = (vec![0f64; k], vec![0f64; k]);
        let (mut x, mut a, mut z) = (Vec::new(), Vec::new(), Vec::new());
        let mut buffers = LossBuffers::default();
        let (mut block, mut y) = (Vec::with_capacity(EVAL_BLOCK), Vec::new());
        for start in (0..split.len()).step_by(EVAL_BLOCK) {
            block.clear();
            block.extend(start as u32..(start + EVAL_BLOCK).min(split.len()) as u32);
            gather_feature_major(split, &block, &mut x, &mut y);
            let b = block.len();
            for trial in 0..k {
                let params = &self.state.params[trial * self.layout.width..][..self.layout.width];
                let running = |index: usize, features: usize| {
                    let (m, v) = &self.state.running[index];
                    (
                        &m[trial * features..][..features],
                        &v[trial * features..][..features],
                    )
                };
                let (rm, rv) = running(0, NUM_FEATURES);
                norm_eval(&x, b, &self.layout.input_norm, params, rm, rv, &mut a);
                let mut norm_index = 1;
                for stage in &self.layout.stages {
                    let out_width = stage.bias.len();
                    linear(
                        &a,
                        b,
                        &params[stage.weight.range()],
                        &params[stage.bias.range()],
                        out_width,
                        &mut z,
                    );
                    match &stage.norm {
                        Some(n) => {
                            let (rm, rv) = running(norm_index, n.features);
                            norm_index += 1;
                            norm_eval(&z, b, n, params, rm, rv, &mut a);
                        }
                        None => {
                            a.clear();
                            a.extend(z.iter().map(|&v| relu(v)));
                        }
                    }
                }
                let (l, c) = cross_entropy(&a, &y, &mut buffers, None);
                loss[trial] += f64::from(l);
                correct[trial] += f64::from(c);
            }
        }
        let n = split.len().max(1) as f64;
        (
            loss.into_iter().map(|v| v / n).collect(),
            correct.into_iter().map(|v| v / n).collect(),
        )
    }
}

impl Engine for LoopEngine<'_> {
    fn steps(&self) -> u64 {
        self.state.steps
    }

    fn resume(&mut self, saved: Saved) -> Result<(), WorkerError> {
        self.state = HostState::from_saved(&self.layout, &[saved])?;
        Ok(())
    }

    fn train_epoch(
        &mut self,
        epoch: usize,
        trace_steps: usize,
        on_step: &mut dyn FnMut(usize, u64, f64),
    ) -> LaneMeans {
        let data = self.data;
        self.train_split(&data.train, epoch, trace_steps, on_step)
            .into()
    }

    fn evaluate(&self) -> [LaneMeans; 2] {
        [self.data.validation().0, &self.data.test].map(|split| self.evaluate_split(split).into())
    }

    fn checkpoints(&self, which: &[(usize, Position)]) -> Vec<Vec<u8>> {
        which
            .iter()
            .map(|&(trial, position)| self.state.checkpoint(&self.layout, trial, position))
            .collect()
    }
}

/// Trial `trial`'s running mean and variance rows of one BatchNorm.
#[inline(always)]
fn running_rows(
    running: &mut (Vec<f32>, Vec<f32>),
    trial: usize,
    features: usize,
) -> (&mut [f32], &mut [f32]) {
    let (m, v) = running;
    (
        &mut m[trial * features..][..features],
        &mut v[trial * features..][..features],
    )
}

/// Rows `rows` of `split`, feature-major: `x[f * b + j]` is feature `f` of the `j`-th row.
#[inline(always)]
fn gather_feature_major(split: &Split, rows: &[u32], x: &mut Vec<f32>, y: &mut Vec<u8>) {
    let b = rows.len();
    x.clear();
    x.resize(NUM_FEATURES * b, 0.0);
    y.clear();
    for (j, &r) in rows.iter().enumerate() {
        let r = r as usize;
        for (f, v) in split.x[r * NUM_FEATURES..][..NUM_FEATURES]
            .iter()
            .enumerate()
        {
            x[f * b + j] = *v;
        }
        y.push(split.y[r]);
    }
}

#[inline(always)]
fn relu(v: f32) -> f32 {
    if v > 0.0 { v } else { 0.0 }
}

/// Lanes of the partial sums below: eight independent accumulators let the compiler use vector
/// registers (a single f32 accumulator must add in order, one element at a time).
const LANES: usize = 8;

#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let (ac, bc) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ac.zip(bc) {
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[inline(always)]
fn sum(a: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = a.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().sum();
    for x in chunks {
        for l in 0..LANES {
            acc[l] += x[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Σ (a - mean)².
#[inline(always)]
fn squared_deviation(a: &[f32], mean: f32) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = a.chunks_exact(LANES);
    let tail: f32 = chunks
        .remainder()
        .iter()
        .map(|v| (v - mean) * (v - mean))
        .sum();
    for x in chunks {
        for l in 0..LANES {
            let d = x[l] - mean;
            acc[l] += d * d;
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `dst += alpha * src`.
#[inline(always)]
fn axpy(dst: &mut [f32], alpha: f32, src: &[f32]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d += alpha * s;
    }
}

/// `z[o][j] = bias[o] + Σ_i weight[i][o] · a[i][j]` for `a` `[in][b]`, `weight` `[in][out]`.
#[inline(always)]
fn linear(a: &[f32], b: usize, weight: &[f32], bias: &[f32], out_width: usize, z: &mut Vec<f32>) {
    let in_width = a.len() / b.max(1);
    // Every row is filled with its bias first.
    z.resize(out_width * b, 0.0);
    for o in 0..out_width {
        let row = &mut z[o * b..][..b];
        row.fill(bias[o]);
        for i in 0..in_width {
            axpy(row, weight[i * out_width + o], &a[i * b..][..b]);
        }
    }
}

/// BatchNorm with batch statistics, then ReLU, over `x` `[F][b]`: writes the normalised input,
/// the standard deviations and the output, and updates the running statistics (PyTorch's, with
/// the unbiased variance).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn norm_train(
    x: &[f32],
    b: usize,
    slots: &NormSlots,
    params: &[f32],
    running_mean: &mut [f32],
    running_var: &mut [f32],
    normalised: &mut Vec<f32>,
    std: &mut Vec<f32>,
    out: &mut Vec<f32>,
) {
    let features = slots.features;
    // Every element is written below.
    normalised.resize(features * b, 0.0);
    out.resize(features * b, 0.0);
    std.clear();
    let (gamma, beta) = (&params[slots.gamma.range()], &params[slots.beta.range()]);
    let unbiased = b as f64 / (b.max(2) - 1) as f64;
    for f in 0..features {
        let row = &x[f * b..][..b];
        let mean = sum(row) / b as f32;
        let var = squared_deviation(row, mean) / b as f32;
        if b > 1 {
            running_mean[f] =
                running_mean[f] * (1.0 - BN_MOMENTUM) as f32 + mean * BN_MOMENTUM as f32;
            running_var[f] =
                running_var[f] * (1.0 - BN_MOMENTUM) as f32 + var * (BN_MOMENTUM * unbiased) as f32;
        }
        let s = (var + BN_EPSILON).sqrt();
        std.push(s);
        let (nrow, orow) = (&mut normalised[f * b..][..b], &mut out[f * b..][..b]);
        for j in 0..b {
            let n = (row[j] - mean) / s;
            nrow[j] = n;
            orow[j] = relu(n * gamma[f] + beta[f]);
        }
    }
}

/// BatchNorm with running statistics, then ReLU, over `x` `[F][b]` into `out`.
#[inline(always)]
fn norm_eval(
    x: &[f32],
    b: usize,
    slots: &NormSlots,
    params: &[f32],
    running_mean: &[f32],
    running_var: &[f32],
    out: &mut Vec<f32>,
) {
    let features = slots.features;
    out.resize(features * b, 0.0);
    let (gamma, beta) = (&params[slots.gamma.range()], &params[slots.beta.range()]);
    for f in 0..features {
        let s = (running_var[f] + BN_EPSILON).sqrt();
        let (m, g, bt) = (running_mean[f], gamma[f], beta[f]);
        for (o, v) in out[f * b..][..b].iter_mut().zip(&x[f * b..][..b]) {
            *o = relu((v - m) / s * g + bt);
        }
    }
}

/// The gradient of a BatchNorm (batch statistics), given `grad` with respect to its output (the
/// ReLU after it already applied): writes γ's and β's gradients into `grads` and leaves in `grad`
/// the gradient with respect to its input.
#[inline(always)]
fn norm_backward(
    grad: &mut [f32],
    b: usize,
    normalised: &[f32],
    std: &[f32],
    gamma: &[f32],
    grads: &mut [f32],
    slots: &NormSlots,
) {
    let inv_b = 1.0 / b as f32;
    for f in 0..slots.features {
        let (g, n) = (&mut grad[f * b..][..b], &normalised[f * b..][..b]);
        let g_beta = sum(g);
        let g_gamma = dot(g, n);
        grads[slots.beta.offset + f] = g_beta;
        grads[slots.gamma.offset + f] = g_gamma;
        let mean_g = g_beta * gamma[f] * inv_b;
        let mean_gn = g_gamma * gamma[f] * inv_b;
        for j in 0..b {
            g[j] = (g[j] * gamma[f] - mean_g - n[j] * mean_gn) / std[f];
        }
    }
}

/// `e^x` for `x ≤ 0` in straight-line arithmetic the compiler vectorises (libm's `expf` is a call
/// per element, and was a fifth of a training step): Cephes' `expf` — `x = n·ln 2 + r`, a degree-6
/// polynomial in `r`, `2ⁿ` built in the exponent bits — within 2 ulp of the exact value; `e⁰` is
/// exactly 1. Below −87.3 (where `e^x` leaves the normal floats) it returns `e^−87.3`.
#[inline(always)]
fn exp_nonpositive(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // Adding and subtracting 1.5·2²³ rounds to the nearest integer without a rounding instruction.
    const ROUND: f32 = 12_582_912.0;
    let x = x.max(-87.33654);
    let n = (x * LOG2E + ROUND) - ROUND;
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let z = r * r;
    let p = (((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2)
        * r
        + 1.666_666_5e-1)
        * r
        + 0.5)
        * z
        + r
        + 1.0;
    p * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// `ln x` for positive normal `x` in straight-line arithmetic the compiler vectorises (libm's
/// `logf` is a call per element): Cephes' `logf` — `x = m·2ᵉ` read from the bits with `m` in
/// [√½, √2), a degree-9 polynomial in `m − 1` — within 2 ulp of the exact value.
#[inline(always)]
fn ln_positive(x: f32) -> f32 {
    const SQRT_HALF: f32 = std::f32::consts::FRAC_1_SQRT_2;
    let bits = x.to_bits();
    // frexp: x = m·2ᵉ with m in [0.5, 1).
    let mut e = ((bits >> 23) & 0xff) as i32 - 126;
    let mut m = f32::from_bits((bits & 0x007f_ffff) | 0x3f00_0000);
    let small = m < SQRT_HALF;
    e -= i32::from(small);
    m = if small { m + m - 1.0 } else { m - 1.0 };
    let e = e as f32;
    let z = m * m;
    let mut y = ((((((((7.037_683_6e-2 * m - 1.151_461e-1) * m + 1.167_699_9e-1) * m
        - 1.242_014_1e-1)
        * m
        + 1.424_932_3e-1)
        * m
        - 1.666_805_8e-1)
        * m
        + 2.000_071_4e-1)
        * m
        - 2.499_999_4e-1)
        * m
        + 3.333_333e-1)
        * m
        * z;
    y += -2.121_944_4e-4 * e;
    y += -0.5 * z;
    m + y + 0.693_359_4 * e
}

/// Summed cross-entropy and correct predictions of ReLU'd `logits` `[5][b]` against `y`; with
/// `grad`, writes there d(mean loss)/d(logits) through the ReLU, `[5][b]`.
#[inline(always)]
fn cross_entropy(
    logits: &[f32],
    y: &[u8],
    buffers: &mut LossBuffers,
    grad: Option<&mut Vec<f32>>,
) -> (f32, u32) {
    let b = y.len();
    let z = |c: usize| &logits[c * b..][..b];
    let LossBuffers {
        max,
        arg,
        exp,
        total,
        log_total,
    } = buffers;
    // Per row: the largest logit and the first class that has it (argmax's choice).
    max.clear();
    max.extend_from_slice(z(0));
    arg.clear();
    arg.resize(b, 0);
    for c in 1..NUM_CLASSES {
        // Branch-free (the comparison's outcome is data, not a pattern to predict).
        for ((m, a), &v) in max.iter_mut().zip(arg.iter_mut()).zip(z(c)) {
            let greater = v > *m;
            *m = if greater { v } else { *m };
            *a = if greater { c as u8 } else { *a };
        }
    }
    // exp(z - max) per class, and their total per row.
    exp.resize(NUM_CLASSES * b, 0.0);
    total.clear();
    total.resize(b, 0.0);
    for c in 0..NUM_CLASSES {
        let e = &mut exp[c * b..][..b];
        for ((e, &v), m) in e.iter_mut().zip(z(c)).zip(max.iter()) {
            *e = exp_nonpositive(v - m);
        }
        for (t, e) in total.iter_mut().zip(e.iter()) {
            *t += *e;
        }
    }
    let (mut loss, mut correct) = (0f32, 0u32);
    // ln of each row's total (≥ 1: the largest class contributes e⁰), vectorised.
    log_total.clear();
    log_total.extend(total.iter().map(|&t| ln_positive(t)));
    for j in 0..b {
        let label = usize::from(y[j]);
        loss -= (logits[label * b + j] - max[j]) - log_total[j];
        correct += u32::from(usize::from(arg[j]) == label);
    }
    if let Some(grad) = grad {
        let inv_b = 1.0 / b as f32;
        for c in 0..NUM_CLASSES {
            let g = &mut grad[c * b..][..b];
            let (e, z) = (&exp[c * b..][..b], z(c));
            for j in 0..b {
                let target = if usize::from(y[j]) == c { 1.0 } else { 0.0 };
                let v = (e[j] / total[j] - target) * inv_b;
                g[j] = if z[j] > 0.0 { v } else { 0.0 };
            }
        }
    }
    (loss, correct)
}

/// One parameter's Adam step with gradient `g`: moments, then the bias-corrected update.
#[inline(always)]
fn adam_update(p: &mut f32, m1: &mut f32, m2: &mut f32, g: f32, combined: f32, eps: f32, lr: f32) {
    *m1 = *m1 * ADAM_BETA1 + g * (1.0 - ADAM_BETA1);
    *m2 = *m2 * ADAM_BETA2 + g * g * (1.0 - ADAM_BETA2);
    let delta = (*m1 * combined) / (m2.sqrt() + eps);
    *p -= delta * lr;
}

#[cfg(test)]
mod tests {
    use super::exp_nonpositive;

    #[test]
    fn the_vectorised_exp_is_within_two_ulp_of_libm_and_exact_at_zero() {
        assert_eq!(exp_nonpositive(0.0), 1.0);
        let mut x = 0.0f32;
        while x > -87.0 {
            let (ours, libm) = (exp_nonpositive(x), x.exp());
            assert!(
                ((ours - libm) / libm).abs() <= 2.0 * f32::EPSILON,
                "e^{x}: {ours} vs {libm}"
            );
            x -= 0.0137;
        }
        assert!(exp_nonpositive(-1000.0) > 0.0 && exp_nonpositive(-1000.0) < 1e-37);
    }

    #[test]
    fn the_vectorised_ln_is_within_two_ulp_of_libm() {
        let mut x = 1e-30f32;
        while x < 1e30 {
            let (ours, libm) = (super::ln_positive(x), x.ln());
            assert!(
                (ours - libm).abs() <= 2.0 * f32::EPSILON * libm.abs().max(1.0),
                "ln {x}: {ours} vs {libm}"
            );
            x *= 1.0137;
        }
        assert_eq!(super::ln_positive(1.0), 0.0);
    }
}
