//! A pack's state laid out flat: where each parameter of the model sits in a trial's row of the
//! `[K, P]` parameter vector ([`Layout`]), and the whole state of a pack as host arrays
//! ([`HostState`]: parameters, Adam's moments, BatchNorm running statistics, steps), converted to
//! and from the checkpoint format both trainers share ([`Saved`]).

use std::ops::Range;

use jetsweep_data::NUM_FEATURES;
use jetsweep_proto::trial::Hyperparameters;

use crate::error::WorkerError;
use crate::model::{self, Architecture};
use crate::train::checkpoint::{self, Best, Moments, Position, Saved};

/// Where one flat parameter sits in a trial's row of the `[K, P]` parameter tensor.
#[derive(Debug, Clone)]
pub(crate) struct Slot {
    pub offset: usize,
    pub dims: Vec<usize>,
}

impl Slot {
    pub fn len(&self) -> usize {
        self.dims.iter().product()
    }
    pub fn range(&self) -> Range<usize> {
        self.offset..self.offset + self.len()
    }
}

/// A BatchNorm's parameters and running statistics.
#[derive(Debug, Clone)]
pub(crate) struct NormSlots {
    pub gamma: Slot,
    pub beta: Slot,
    pub features: usize,
}

/// `Linear → [BatchNorm] → ReLU`.
#[derive(Debug, Clone)]
pub(crate) struct StageSlots {
    pub weight: Slot,
    pub bias: Slot,
    pub norm: Option<NormSlots>,
}

/// The model's parameters laid out in one row per trial, in checkpoint order (input BatchNorm γ, β;
/// per stage weight `[in, out]`, bias, then its BatchNorm's γ, β).
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub input_norm: NormSlots,
    pub stages: Vec<StageSlots>,
    pub width: usize,
}

impl Layout {
    pub fn of(arch: &Architecture) -> Layout {
        let mut offset = 0;
        let mut slot = |dims: Vec<usize>| {
            let s = Slot { offset, dims };
            offset += s.len();
            s
        };
        let norm = |features: usize, slot: &mut dyn FnMut(Vec<usize>) -> Slot| NormSlots {
            gamma: slot(vec![features]),
            beta: slot(vec![features]),
            features,
        };
        let input_norm = norm(NUM_FEATURES, &mut slot);
        let mut fan_in = NUM_FEATURES;
        let mut stages = Vec::new();
        for s in &arch.stages {
            let weight = slot(vec![fan_in, s.width]);
            let bias = slot(vec![s.width]);
            let stage_norm = s.norm.then(|| norm(s.width, &mut slot));
            stages.push(StageSlots {
                weight,
                bias,
                norm: stage_norm,
            });
            fan_in = s.width;
        }
        Layout {
            input_norm,
            stages,
            width: offset,
        }
    }

    /// The trainable parameters in checkpoint order.
    pub fn params(&self) -> Vec<&Slot> {
        let mut out = vec![&self.input_norm.gamma, &self.input_norm.beta];
        for s in &self.stages {
            out.extend([&s.weight, &s.bias]);
            if let Some(n) = &s.norm {
                out.extend([&n.gamma, &n.beta]);
            }
        }
        out
    }

    /// What each tensor of a checkpoint is, in field order.
    pub fn fields(&self) -> Vec<Field> {
        let mut out = Vec::new();
        let (mut param, mut norm) = (0, 0);
        let mut push_norm = |out: &mut Vec<Field>, param: &mut usize| {
            out.extend([Field::Param(*param), Field::Param(*param + 1)]);
            out.extend([Field::RunningMean(norm), Field::RunningVar(norm)]);
            *param += 2;
            norm += 1;
        };
        push_norm(&mut out, &mut param);
        for s in &self.stages {
            out.extend([Field::Param(param), Field::Param(param + 1)]);
            param += 2;
            if s.norm.is_some() {
                push_norm(&mut out, &mut param);
            }
        }
        out
    }

    /// The BatchNorms in order (input first), for their running statistics.
    pub fn norms(&self) -> Vec<&NormSlots> {
        std::iter::once(&self.input_norm)
            .chain(self.stages.iter().filter_map(|s| s.norm.as_ref()))
            .collect()
    }
}

/// A tensor of a checkpoint: a trainable parameter (index into [`Layout::params`]) or a
/// BatchNorm's running statistic (index into [`Layout::norms`]).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Field {
    Param(usize),
    RunningMean(usize),
    RunningVar(usize),
}

/// A pack's whole state as host arrays: what the CPU kernel steps, and what the device trainer
/// uploads and reads back.
#[derive(Debug, Clone)]
pub(crate) struct HostState {
    /// `[K, P]`: each trial's parameters in one row, in [`Layout`] order.
    pub params: Vec<f32>,
    /// Adam's first and second moments, `[K, P]`.
    pub moment1: Vec<f32>,
    pub moment2: Vec<f32>,
    /// Per BatchNorm (input first): running mean and variance, `[K, F]`.
    pub running: Vec<(Vec<f32>, Vec<f32>)>,
    /// Optimizer steps taken (the same for every trial of the pack).
    pub steps: u64,
}

/// Refuses an empty pack, a trial whose hyperparameters no training can use, and trials that
/// cannot train together.
pub(crate) fn check(configs: &[Hyperparameters]) -> Result<(), WorkerError> {
    let first = configs
        .first()
        .ok_or_else(|| WorkerError::Invalid("a pack needs at least one trial".into()))?;
    for c in configs {
        c.validate()?;
        if !first.packs_with(c) {
            return Err(WorkerError::Invalid(format!(
                "trials of {} batch {} × {} epochs and {} batch {} × {} epochs cannot train in one pack",
                first.model,
                first.batch_size,
                first.max_epochs,
                c.model,
                c.batch_size,
                c.max_epochs
            )));
        }
    }
    Ok(())
}

/// Each trial's starting state: parameters drawn from its seed exactly as [`model::init`] does.
pub(crate) fn initial(configs: &[Hyperparameters], layout: &Layout) -> Vec<Saved> {
    configs
        .iter()
        .map(|c| {
            let initial = model::init::<burn::backend::Flex>(&c.model, c.seed, &Default::default());
            Saved {
                position: Position {
                    epoch: 0,
                    steps: 0,
                    best: Best::NONE,
                    last_test_acc: 0.0,
                },
                tensors: initial.tensors(),
                moments: vec![None; layout.params().len()],
                best: None,
            }
        })
        .collect()
}

impl HostState {
    /// Every trial's state (one [`Saved`] per trial, all after the same number of steps), laid
    /// out flat. Checks every length against the model.
    pub fn from_saved(layout: &Layout, states: &[Saved]) -> Result<HostState, WorkerError> {
        let k = states.len();
        let bad = |what: String| WorkerError::Checkpoint(what);
        let params = layout.params();
        let norms = layout.norms();
        let width = layout.width;
        let mut flat = vec![0f32; k * width];
        let mut m1 = vec![0f32; k * width];
        let mut m2 = vec![0f32; k * width];
        let mut running: Vec<(Vec<f32>, Vec<f32>)> = norms
            .iter()
            .map(|n| (vec![0f32; k * n.features], vec![0f32; k * n.features]))
            .collect();
        let steps = states.first().map_or(0, |s| s.position.steps);
        let fields = layout.fields();
        for (trial, state) in states.iter().enumerate() {
            if state.tensors.len() != fields.len() || state.moments.len() != params.len() {
                return Err(bad(format!(
                    "{} tensors and {} optimizer states, for a model of {} and {}",
                    state.tensors.len(),
                    state.moments.len(),
                    fields.len(),
                    params.len()
                )));
            }
            if state.position.steps != steps {
                return Err(bad(
                    "trials of one pack must have taken the same steps".into()
                ));
            }
            for (field, values) in fields.iter().zip(&state.tensors) {
                let (dst, offset, len) = match *field {
                    Field::Param(i) => {
                        (&mut flat, trial * width + params[i].offset, params[i].len())
                    }
                    Field::RunningMean(i) => (
                        &mut running[i].0,
                        trial * norms[i].features,
                        norms[i].features,
                    ),
                    Field::RunningVar(i) => (
                        &mut running[i].1,
                        trial * norms[i].features,
                        norms[i].features,
                    ),
                };
                if values.len() != len {
                    return Err(bad(format!(
                        "a tensor of {} values where the model has {len}",
                        values.len()
                    )));
                }
                dst[offset..offset + len].copy_from_slice(values);
            }
            for (i, (slot, moments)) in params.iter().zip(&state.moments).enumerate() {
                let at = trial * width + slot.offset;
                match moments {
                    Some(Moments {
                        time,
                        first,
                        second,
                    }) if first.len() == slot.len()
                        && second.len() == slot.len()
                        && *time == steps =>
                    {
                        m1[at..at + slot.len()].copy_from_slice(first);
                        m2[at..at + slot.len()].copy_from_slice(second);
                    }
                    None if steps == 0 => {}
                    _ => {
                        return Err(bad(format!(
                            "the optimizer state of parameter {i} does not fit a model after {steps} steps"
                        )));
                    }
                }
            }
        }
        Ok(HostState {
            params: flat,
            moment1: m1,
            moment2: m2,
            running,
            steps,
        })
    }

    /// Trial `trial`'s state as checkpoint bytes (the unpacked trainer's format).
    pub fn checkpoint(&self, layout: &Layout, trial: usize, position: Position) -> Vec<u8> {
        let width = layout.width;
        let norms = layout.norms();
        let slots = layout.params();
        let row = |values: &[f32], slot: &Slot| {
            values[trial * width + slot.offset..][..slot.len()].to_vec()
        };
        let stat =
            |values: &[f32], features: usize| values[trial * features..][..features].to_vec();
        let tensors = layout
            .fields()
            .into_iter()
            .map(|field| match field {
                Field::Param(i) => row(&self.params, slots[i]),
                Field::RunningMean(i) => stat(&self.running[i].0, norms[i].features),
                Field::RunningVar(i) => stat(&self.running[i].1, norms[i].features),
            })
            .collect();
        let moments = slots
            .iter()
            .map(|slot| {
                (self.steps > 0).then(|| Moments {
                    time: self.steps,
                    first: row(&self.moment1, slot),
                    second: row(&self.moment2, slot),
                })
            })
            .collect();
        checkpoint::encode(&Saved {
            position: Position {
                steps: self.steps,
                ..position
            },
            tensors,
            moments,
            best: None,
        })
    }
}
