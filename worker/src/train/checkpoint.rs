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
//! order (u32 count, each u8 present, then u64 step count, u32 length, first and second moments);
//! from version 2, the best epoch's model when it is not this one (u8 present, then u64 steps and
//! the tensors as above), so a resumed trial keeps the weights of its best epoch.
//! The bytes come back from the coordinator, so decoding checks every length, and the engine that
//! takes the state checks it against the model the trial builds; anything else is refused
//! ([`WorkerError::Checkpoint`]). This file is the format only: each engine converts its own state
//! to and from [`Saved`] (`engine/state.rs` for the packed engines, `engine/autodiff.rs` for burn's).

use jetsweep_proto::trial::Hyperparameters;

use crate::error::WorkerError;

const MAGIC: &[u8; 4] = b"JSCK";
const VERSION: u16 = 2;

/// The best epoch so far: the one with the lowest validation loss (MASE's `best.ckpt`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Best {
    pub val_loss: f64,
    /// 1-based epoch number; 0 before any epoch.
    pub epoch: u32,
    /// The test accuracy after that epoch.
    pub test_acc: f64,
}

impl Best {
    /// Before any epoch: every real loss is better.
    pub const NONE: Best = Best {
        val_loss: f64::INFINITY,
        epoch: 0,
        test_acc: 0.0,
    };
}

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

/// The model's tensors after the best epoch so far, and the steps taken by then.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BestWeights {
    pub steps: u64,
    pub tensors: Vec<Vec<f32>>,
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
    /// The best epoch's tensors when that epoch is an earlier one (`None`: the best epoch is this
    /// one, or a version-1 state that did not keep them).
    pub best: Option<BestWeights>,
}

impl Saved {
    /// The best epoch's weights: kept ones, or these when the best epoch is this one.
    pub fn best_weights(&self) -> Option<BestWeights> {
        if self.position.best.epoch == self.position.epoch {
            return Some(BestWeights {
                steps: self.position.steps,
                tensors: self.tensors.clone(),
            });
        }
        self.best.clone()
    }
}

/// `saved` as bytes (the encoding in the module documentation).
pub(crate) fn encode(saved: &Saved) -> Vec<u8> {
    let Saved {
        position,
        tensors,
        moments,
        best,
    } = saved;
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&position.epoch.to_le_bytes());
    out.extend_from_slice(&position.steps.to_le_bytes());
    out.extend_from_slice(&position.best.val_loss.to_le_bytes());
    out.extend_from_slice(&position.best.epoch.to_le_bytes());
    out.extend_from_slice(&position.best.test_acc.to_le_bytes());
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
    match best {
        None => out.push(0),
        Some(b) => put_best(&mut out, b),
    }
    out
}

fn put_best(out: &mut Vec<u8>, best: &BestWeights) {
    out.push(1);
    out.extend_from_slice(&best.steps.to_le_bytes());
    put_u32(out, best.tensors.len());
    for t in &best.tensors {
        put_floats(out, t);
    }
}

/// `bytes` (an [`encode`]d state without best weights, as an engine writes it) with `best`
/// added: the state of a trial whose best epoch is an earlier one.
pub(crate) fn attach_best(bytes: &mut Vec<u8>, best: &BestWeights) {
    assert_eq!(bytes.last(), Some(&0), "a state without best weights");
    bytes.pop();
    put_best(bytes, best);
}

fn bad(what: String) -> WorkerError {
    WorkerError::Checkpoint(what)
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

/// Saved state for a trial of `config`, checked to be after an epoch of that trial (the one resume
/// rule: after epoch 1 to `max_epochs - 1`, its best epoch no later). Not yet checked against the
/// model's shapes: the engine that takes it does that.
pub(crate) fn decode_for(bytes: &[u8], config: &Hyperparameters) -> Result<Saved, WorkerError> {
    let saved = decode(bytes)?;
    let Position { epoch, best, .. } = saved.position;
    if epoch == 0 || epoch >= config.max_epochs || best.epoch > epoch {
        return Err(bad(format!(
            "it is after epoch {epoch} (best {}) of a trial of {}",
            best.epoch, config.max_epochs
        )));
    }
    Ok(saved)
}

/// Reads the bytes, checking every length against what is left (not yet against a model).
pub(crate) fn decode(bytes: &[u8]) -> Result<Saved, WorkerError> {
    let mut r = Reader { bytes };
    if r.take(4)? != MAGIC {
        return Err(bad("it is not a jetsweep checkpoint".into()));
    }
    let version = u16::from_le_bytes(r.array()?);
    if !(1..=VERSION).contains(&version) {
        return Err(bad(format!(
            "format version {version}; this worker reads {VERSION}"
        )));
    }
    let position = Position {
        epoch: r.u32()?,
        steps: r.u64()?,
        best: Best {
            val_loss: r.f64()?,
            epoch: r.u32()?,
            test_acc: r.f64()?,
        },
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
    let best = if version < 2 {
        None
    } else {
        match r.take(1)?[0] {
            0 => None,
            1 => Some(BestWeights {
                steps: r.u64()?,
                tensors: (0..r.count(4)?)
                    .map(|_| r.floats())
                    .collect::<Result<_, _>>()?,
            }),
            other => return Err(bad(format!("best weights marker {other}"))),
        }
    };
    if !r.bytes.is_empty() {
        return Err(bad(format!("{} bytes left over", r.bytes.len())));
    }
    Ok(Saved {
        position,
        tensors,
        moments,
        best,
    })
}
