//! The reference engine: burn's autodiff and Adam on one trial (a pack of one lane), exactly the
//! program a burn user would write from burn's custom-training-loop example. Slower than the
//! packed engines; it is here so that they are checked, step by step, against code that computes
//! gradients without our hand-written backward pass (`engine_tests.rs`), and for
//! `jetsweep-worker train --autodiff`. Its checkpoints are the format every engine shares.

use burn::module::{AutodiffModule, Param, ParamId, RunningState};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::record::AdaptorRecord;
use burn::optim::{AdamConfig, AdamState, AdaptiveMomentumState, GradientsParams, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Int, Tensor, TensorData, activation::log_softmax};
use jetsweep_data::batch::{self, batch_ranges};
use jetsweep_data::{NUM_FEATURES, Prepared, Split};
use jetsweep_proto::trial::{self, Hyperparameters};

use crate::error::WorkerError;
use crate::model::{self, BatchNorm1d, Dense, Mlp, Stage, host};
use crate::train::checkpoint::{self, Moments, Position, Saved};
use crate::train::epochs::{Engine, LaneMeans};
use crate::train::recipe::{ADAM_EPSILON, cosine_lr};

/// Rows per forward pass when evaluating; large, since evaluation keeps no graph.
const EVAL_CHUNK: usize = 8192;

/// Mean cross-entropy of `logits` `[n, 5]` against class indices `[n]`.
pub(crate) fn cross_entropy<B: Backend>(
    logits: Tensor<B, 2>,
    targets: Tensor<B, 1, Int>,
) -> Tensor<B, 1> {
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
fn evaluate<B: Backend>(model: &Mlp<B>, split: &Split, device: &B::Device) -> (f64, f64) {
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

/// burn's Adam for our model.
type Adam<B> = burn::optim::adaptor::OptimizerAdaptor<burn::optim::Adam, Mlp<B>, B>;

/// The optimizer a trial names. Every optimizer a trial may name is matched here: a new one cannot
/// be accepted by the sweep file and then ignored.
fn new_optimizer<B: AutodiffBackend>(config: &Hyperparameters) -> Adam<B> {
    match config.optimizer {
        trial::Optimizer::Adam => AdamConfig::new()
            .with_epsilon(ADAM_EPSILON)
            // burn's decay is PyTorch Adam's: `p · wd` added to the gradient before the moments.
            .with_weight_decay(
                (config.weight_decay != 0.0)
                    .then(|| WeightDecayConfig::new(config.weight_decay as f32)),
            )
            .init::<B, Mlp<B>>(),
    }
}

/// One trial's model and optimizer, stepping through epochs on `data`.
pub(crate) struct AutodiffEngine<'a, B: AutodiffBackend> {
    config: Hyperparameters,
    data: &'a Prepared,
    device: B::Device,
    /// Taken out for the length of a step (burn's optimizer consumes and returns the model).
    model: Option<Mlp<B>>,
    optim: Adam<B>,
    steps: u64,
    // Reused gather buffers.
    xb: Vec<f32>,
    yb: Vec<i32>,
}

impl<'a, B: AutodiffBackend> AutodiffEngine<'a, B> {
    /// `config`'s model drawn from its seed, and a fresh optimizer; refuses hyperparameters no
    /// training can use.
    pub fn new(
        config: Hyperparameters,
        data: &'a Prepared,
        device: B::Device,
    ) -> Result<Self, WorkerError> {
        config.validate()?;
        let model = model::init::<B>(&config.model, config.seed, &device);
        Ok(AutodiffEngine {
            optim: new_optimizer(&config),
            config,
            data,
            device,
            model: Some(model),
            steps: 0,
            xb: Vec::new(),
            yb: Vec::new(),
        })
    }

    fn model(&self) -> &Mlp<B> {
        self.model
            .as_ref()
            .expect("the model is only taken during a step")
    }
}

impl<B: AutodiffBackend> Engine for AutodiffEngine<'_, B> {
    fn steps(&self) -> u64 {
        self.steps
    }

    fn resume(&mut self, saved: Saved) -> Result<(), WorkerError> {
        let model = model::init::<B>(&self.config.model, self.config.seed, &self.device);
        let steps = saved.position.steps;
        let (model, optim) = load(saved, model, new_optimizer(&self.config), &self.device)?;
        self.model = Some(model);
        self.optim = optim;
        self.steps = steps;
        Ok(())
    }

    fn train_epoch(
        &mut self,
        epoch: usize,
        trace_steps: usize,
        on_step: &mut dyn FnMut(usize, u64, f64),
    ) -> LaneMeans {
        let train = &self.data.train;
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
            if (self.steps as usize) < trace_steps {
                on_step(
                    0,
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
        // Reading the sums waits for the device, so the loop's time covers all the work.
        let n = train.len().max(1) as f64;
        LaneMeans {
            loss: vec![loss_sum.map_or(0.0, |s| s.into_scalar().elem::<f64>()) / n],
            acc: vec![correct_sum.map_or(0, |s| s.into_scalar().elem::<i64>()) as f64 / n],
        }
    }

    fn evaluate(&self) -> [LaneMeans; 2] {
        let model = self.model().valid();
        [self.data.validation().0, &self.data.test].map(|split| {
            let (loss, acc) = evaluate(&model, split, &self.device);
            (vec![loss], vec![acc]).into()
        })
    }

    fn checkpoints(&self, which: &[(usize, Position)]) -> Vec<Vec<u8>> {
        which
            .iter()
            .map(|&(_, position)| save(self.model(), &self.optim, position))
            .collect()
    }
}

/// The state after an epoch as bytes.
fn save<B: AutodiffBackend>(model: &Mlp<B>, optim: &Adam<B>, position: Position) -> Vec<u8> {
    let mut records = optim.to_record();
    let moments = params(model)
        .into_iter()
        .map(|(id, rank)| {
            let record = records.remove(&id)?;
            Some(match rank {
                1 => moments_of(record.into_state::<1>().momentum),
                _ => moments_of(record.into_state::<2>().momentum),
            })
        })
        .collect();
    checkpoint::encode(&Saved {
        position,
        tensors: model.tensors(),
        moments,
        best: None,
    })
}

/// `decoded` put into `model` and `optim` (fresh, built for the same trial), or an error if it
/// does not fit the model.
fn load<B: AutodiffBackend>(
    decoded: Saved,
    model: Mlp<B>,
    optim: Adam<B>,
    device: &B::Device,
) -> Result<(Mlp<B>, Adam<B>), WorkerError> {
    let shapes = model.tensors().iter().map(Vec::len).collect::<Vec<_>>();
    let found = decoded.tensors.iter().map(Vec::len).collect::<Vec<_>>();
    if shapes != found {
        return Err(bad(format!(
            "tensor sizes {found:?} do not fit the model's {shapes:?}"
        )));
    }
    let params = params(&model);
    if decoded.moments.len() != params.len() {
        return Err(bad(format!(
            "{} optimizer states for {} parameters",
            decoded.moments.len(),
            params.len()
        )));
    }

    let mut values = decoded.tensors.into_iter();
    let mut next = || values.next().expect("count checked above");
    let Mlp { input_norm, stages } = model;
    let input_norm = restore_norm(input_norm, &mut next, device);
    let stages = stages
        .into_iter()
        .map(|s| Stage {
            linear: Dense {
                weight: restore(s.linear.weight, next(), device),
                bias: restore(s.linear.bias, next(), device),
            },
            norm: s.norm.map(|n| restore_norm(n, &mut next, device)),
        })
        .collect();
    let model = Mlp { input_norm, stages };

    // The parameter ids survive restoring, so the optimizer's state is keyed by the same ids.
    // A fresh optimizer's record is an empty map of the right type.
    let mut records = optim.to_record();
    let sizes = model_param_sizes(&model);
    for (((id, rank), size), moments) in params.into_iter().zip(sizes).zip(decoded.moments) {
        let Some(m) = moments else { continue };
        if m.first.len() != size || m.second.len() != size {
            return Err(bad(format!(
                "optimizer moments of {} values for a parameter of {size}",
                m.first.len()
            )));
        }
        let record = match rank {
            1 => AdaptorRecord::from_state::<1>(AdamState::new(moment_state(m, [size], device))),
            _ => {
                let dims = model_param_dims(&model, id).expect("the id came from this model");
                AdaptorRecord::from_state::<2>(AdamState::new(moment_state(m, dims, device)))
            }
        };
        records.insert(id, record);
    }
    Ok((model, optim.load_record(records)))
}

fn bad(what: String) -> WorkerError {
    WorkerError::Checkpoint(what)
}

/// The trainable parameters (what Adam keeps state for), in field order, with their ranks.
fn params<B: Backend>(model: &Mlp<B>) -> Vec<(ParamId, usize)> {
    let mut out = vec![
        (model.input_norm.gamma.id, 1),
        (model.input_norm.beta.id, 1),
    ];
    for s in &model.stages {
        out.push((s.linear.weight.id, 2));
        out.push((s.linear.bias.id, 1));
        if let Some(n) = &s.norm {
            out.push((n.gamma.id, 1));
            out.push((n.beta.id, 1));
        }
    }
    out
}

fn model_param_sizes<B: Backend>(model: &Mlp<B>) -> Vec<usize> {
    let mut out = vec![model.input_norm.gamma.dims()[0]; 2];
    for s in &model.stages {
        let [i, o] = s.linear.weight.dims();
        out.push(i * o);
        out.push(o);
        if let Some(n) = &s.norm {
            out.extend([n.gamma.dims()[0]; 2]);
        }
    }
    out
}

fn model_param_dims<B: Backend>(model: &Mlp<B>, id: ParamId) -> Option<[usize; 2]> {
    model
        .stages
        .iter()
        .find(|s| s.linear.weight.id == id)
        .map(|s| s.linear.weight.dims())
}

fn restore<B: AutodiffBackend, const D: usize>(
    p: Param<Tensor<B, D>>,
    values: Vec<f32>,
    device: &B::Device,
) -> Param<Tensor<B, D>> {
    p.map(|t| Tensor::from_data(TensorData::new(values, t.shape()), device).require_grad())
}

fn restore_norm<B: AutodiffBackend>(
    n: BatchNorm1d<B>,
    next: &mut dyn FnMut() -> Vec<f32>,
    device: &B::Device,
) -> BatchNorm1d<B> {
    let features = n.gamma.dims()[0];
    let running = |values: Vec<f32>| {
        RunningState::new(Tensor::from_data(
            TensorData::new(values, [features]),
            device,
        ))
    };
    BatchNorm1d {
        gamma: restore(n.gamma, next(), device),
        beta: restore(n.beta, next(), device),
        running_mean: running(next()),
        running_var: running(next()),
    }
}

fn moments_of<B: Backend, const D: usize>(m: AdaptiveMomentumState<B, D>) -> Moments {
    Moments {
        time: m.time as u64,
        first: host(m.moment_1),
        second: host(m.moment_2),
    }
}

fn moment_state<B: Backend, const D: usize>(
    m: Moments,
    dims: [usize; D],
    device: &B::Device,
) -> AdaptiveMomentumState<B, D> {
    AdaptiveMomentumState::new(
        m.time as usize,
        Tensor::from_data(TensorData::new(m.first, dims), device),
        Tensor::from_data(TensorData::new(m.second, dims), device),
    )
}
