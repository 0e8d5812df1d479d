//! A trial's state between epochs, as bytes: everything the next epoch depends on, so a trial
//! stopped after epoch k and resumed on any worker ends with the same numbers as one never stopped.
//!
//! What is saved: the model's tensors (weights, biases, BatchNorm γ/β and running statistics), Adam's
//! state per parameter (step count, first and second moments), the step counter, and the best epoch
//! so far. What is not saved because it is a function of the epoch: the learning rate (cosine
//! schedule) and the shuffle order (`batch::epoch_order(seed, epoch)`).
//!
//! Encoding (little-endian): `JSCK`, format version (u16), epoch (u32), steps (u64), best val loss
//! (f64), best epoch (u32), best test acc (f64), last test acc (f64); the model's tensors (u32 count,
//! each u32 length + f32 values, in [`Mlp`] field order); Adam's moments per parameter in the same
//! order (u32 count, each u8 present, then u64 step count, u32 length, first and second moments).
//! The bytes come back from the coordinator, so decoding checks every length against the model the
//! trial builds and refuses anything else ([`WorkerError::Checkpoint`]).

use burn::module::{Param, ParamId, RunningState};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::record::AdaptorRecord;
use burn::optim::{Adam, AdamState, AdaptiveMomentumState, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};

use crate::error::WorkerError;
use crate::model::{BatchNorm1d, Dense, Mlp, Stage};

const MAGIC: &[u8; 4] = b"JSCK";
const VERSION: u16 = 1;

/// The best epoch so far: (validation loss, epoch number, test accuracy there).
pub type Best = (f64, u32, f64);

/// Where the training loop stood after an epoch, apart from the model and optimizer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Position {
    /// Epochs completed (1-based number of the last one).
    pub epoch: u32,
    /// Optimizer steps taken.
    pub steps: u64,
    pub best: Best,
    pub last_test_acc: f64,
}

/// Adam's state for one parameter.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Moments {
    pub time: u64,
    pub first: Vec<f32>,
    pub second: Vec<f32>,
}

/// A trial's state as host arrays: the model's tensors in field order (per BatchNorm γ, β, running
/// mean, running variance; per stage the weight `[in, out]` row-major and the bias, then its
/// BatchNorm), and Adam's moments per trainable parameter in the same order. What the bytes hold;
/// decoded, it is not yet checked against a model.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Saved {
    pub position: Position,
    pub tensors: Vec<Vec<f32>>,
    pub moments: Vec<Option<Moments>>,
}

type Optim<B> = OptimizerAdaptor<Adam, Mlp<B>, B>;

/// The state after an epoch as bytes.
pub fn save<B: AutodiffBackend>(model: &Mlp<B>, optim: &Optim<B>, position: Position) -> Vec<u8> {
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
    encode(&Saved {
        position,
        tensors: model_tensors(model),
        moments,
    })
}

/// `saved` as bytes (the encoding in the module documentation).
pub(crate) fn encode(saved: &Saved) -> Vec<u8> {
    let Saved {
        position,
        tensors,
        moments,
    } = saved;
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&position.epoch.to_le_bytes());
    out.extend_from_slice(&position.steps.to_le_bytes());
    out.extend_from_slice(&position.best.0.to_le_bytes());
    out.extend_from_slice(&position.best.1.to_le_bytes());
    out.extend_from_slice(&position.best.2.to_le_bytes());
    out.extend_from_slice(&position.last_test_acc.to_le_bytes());
    put_u32(&mut out, tensors.len());
    for t in tensors {
        put_floats(&mut out, t);
    }
    put_u32(&mut out, moments.len());
    for m in moments {
        let Some(m) = m else {
            out.push(0);
            continue;
        };
        out.push(1);
        out.extend_from_slice(&m.time.to_le_bytes());
        put_floats(&mut out, &m.first);
        put_floats(&mut out, &m.second);
    }
    out
}

/// Puts the state in `bytes` into `model` and `optim` (built for the same trial); returns where
/// the loop stood. Nothing is changed if the bytes do not fit the model.
pub fn load<B: AutodiffBackend>(
    bytes: &[u8],
    model: Mlp<B>,
    optim: Optim<B>,
    device: &B::Device,
) -> Result<(Mlp<B>, Optim<B>, Position), WorkerError> {
    let decoded = decode(bytes)?;
    let shapes = model_tensors(&model)
        .iter()
        .map(Vec::len)
        .collect::<Vec<_>>();
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
    Ok((model, optim.load_record(records), decoded.position))
}

fn bad(what: String) -> WorkerError {
    WorkerError::Checkpoint(what)
}

fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .into_vec()
        .expect("converted to f32")
}

fn norm_tensors<B: Backend>(n: &BatchNorm1d<B>) -> [Vec<f32>; 4] {
    [
        host(n.gamma.val()),
        host(n.beta.val()),
        host(n.running_mean.value()),
        host(n.running_var.value()),
    ]
}

/// Every tensor of the model, in field order.
pub(crate) fn model_tensors<B: Backend>(model: &Mlp<B>) -> Vec<Vec<f32>> {
    let mut out = Vec::from(norm_tensors(&model.input_norm));
    for s in &model.stages {
        out.push(host(s.linear.weight.val()));
        out.push(host(s.linear.bias.val()));
        if let Some(n) = &s.norm {
            out.extend(norm_tensors(n));
        }
    }
    out
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

fn put_u32(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&(n as u32).to_le_bytes());
}

fn put_floats(out: &mut Vec<u8>, values: &[f32]) {
    put_u32(out, values.len());
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// Reads the bytes, checking every length against what is left.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WorkerError> {
        if self.bytes.len() < n {
            return Err(bad(format!(
                "it ends early ({} bytes left, {n} needed)",
                self.bytes.len()
            )));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], WorkerError> {
        Ok(self.take(N)?.try_into().expect("took N bytes"))
    }
    fn u32(&mut self) -> Result<u32, WorkerError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, WorkerError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    fn f64(&mut self) -> Result<f64, WorkerError> {
        Ok(f64::from_le_bytes(self.array()?))
    }
    /// A count of items of at least `min_bytes` each: never more than the bytes left could hold.
    fn count(&mut self, min_bytes: usize) -> Result<usize, WorkerError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_bytes) > self.bytes.len() {
            return Err(bad(format!(
                "it claims {n} items in {} bytes",
                self.bytes.len()
            )));
        }
        Ok(n)
    }
    fn floats(&mut self) -> Result<Vec<f32>, WorkerError> {
        let n = self.count(4)?;
        Ok(self
            .take(n * 4)?
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect())
    }
}

/// Reads the bytes, checking every length against what is left (not yet against a model).
pub(crate) fn decode(bytes: &[u8]) -> Result<Saved, WorkerError> {
    let mut r = Reader { bytes };
    if r.take(4)? != MAGIC {
        return Err(bad("it is not a jetsweep checkpoint".into()));
    }
    let version = u16::from_le_bytes(r.array()?);
    if version != VERSION {
        return Err(bad(format!(
            "format version {version}; this worker reads {VERSION}"
        )));
    }
    let position = Position {
        epoch: r.u32()?,
        steps: r.u64()?,
        best: (r.f64()?, r.u32()?, r.f64()?),
        last_test_acc: r.f64()?,
    };
    let tensors = (0..r.count(4)?)
        .map(|_| r.floats())
        .collect::<Result<_, _>>()?;
    let moments = (0..r.count(1)?)
        .map(|_| match r.take(1)?[0] {
            0 => Ok(None),
            1 => Ok(Some(Moments {
                time: r.u64()?,
                first: r.floats()?,
                second: r.floats()?,
            })),
            other => Err(bad(format!("optimizer state marker {other}"))),
        })
        .collect::<Result<_, _>>()?;
    if !r.bytes.is_empty() {
        return Err(bad(format!("{} bytes left over", r.bytes.len())));
    }
    Ok(Saved {
        position,
        tensors,
        moments,
    })
}
