//! A trial's hyperparameters: everything but the dataset that determines its result, with MASE's
//! defaults and the one validation both the sweep file and the trainer go through.

use std::fmt;
use std::str::FromStr;

use crate::Error;
use crate::model::Architecture;

/// Largest batch a trial may ask for (far above the dataset's 660k training rows would be silly,
/// and a bound keeps one request from asking the worker for gigabytes).
pub const MAX_BATCH_SIZE: u32 = 1 << 20;
/// Most epochs a trial may ask for: MASE trains for 20, and an epoch count is also the cosine
/// schedule's period and the number of epoch rows a job stores.
pub const MAX_EPOCHS: u32 = 100_000;

/// MASE's defaults (`ch train`): lr 1e-5, batch 128, 20 epochs, seed 0, Adam.
pub const DEFAULT_MODEL: &str = "jsc-tiny";
pub const DEFAULT_BATCH_SIZE: u32 = 128;
pub const DEFAULT_MAX_EPOCHS: u32 = 20;
pub const DEFAULT_LEARNING_RATE: f64 = 1e-5;
pub const DEFAULT_SEED: u64 = 0;
/// MASE trains without weight decay.
pub const DEFAULT_WEIGHT_DECAY: f64 = 0.0;
/// Largest weight decay a trial may ask for: an L2 penalty above 1 per step outweighs any
/// gradient of these networks and only ever trains the weights to zero.
pub const MAX_WEIGHT_DECAY: f64 = 1.0;

/// The optimizers a trial may name. The trainer matches on this, so a new one cannot be accepted
/// here and then ignored there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Optimizer {
    /// Adam with PyTorch's constants (β 0.9/0.999, ε 1e-8) and PyTorch's weight decay (an L2 term
    /// added to the gradient before the moments): MASE's choice.
    #[default]
    Adam,
}

impl Optimizer {
    pub const ALL: [Optimizer; 1] = [Optimizer::Adam];

    pub fn as_str(self) -> &'static str {
        match self {
            Optimizer::Adam => "adam",
        }
    }
}

impl fmt::Display for Optimizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Optimizer {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Optimizer::ALL
            .into_iter()
            .find(|o| o.as_str() == s)
            .ok_or_else(|| Error::Invalid {
                field: "optimizer",
                value: format!("{s:?}"),
                hint: format!(
                    "unknown optimizer: use {}",
                    Optimizer::ALL.map(Optimizer::as_str).join(", ")
                ),
            })
    }
}

/// One trial's hyperparameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Hyperparameters {
    pub model: Architecture,
    pub optimizer: Optimizer,
    /// Rows per optimizer step (the last batch of an epoch may be smaller).
    pub batch_size: u32,
    /// Passes over the training data; also the cosine schedule's T_max.
    pub max_epochs: u32,
    /// Initial learning rate, cosine-decayed per epoch to 1e-6.
    pub learning_rate: f64,
    /// Seed of the initial weights and of the per-epoch shuffles.
    pub seed: u64,
    /// PyTorch Adam's `weight_decay`: `weight_decay · parameter` is added to every parameter's
    /// gradient (BatchNorm's γ and β and the biases too) before the moments are updated.
    pub weight_decay: f64,
}

impl Default for Hyperparameters {
    fn default() -> Self {
        Hyperparameters {
            model: DEFAULT_MODEL.parse().expect("the default model parses"),
            optimizer: Optimizer::Adam,
            batch_size: DEFAULT_BATCH_SIZE,
            max_epochs: DEFAULT_MAX_EPOCHS,
            learning_rate: DEFAULT_LEARNING_RATE,
            seed: DEFAULT_SEED,
            weight_decay: DEFAULT_WEIGHT_DECAY,
        }
    }
}

impl Hyperparameters {
    /// What trials must share to train packed, as one stacked computation: the model, optimizer,
    /// batch size and epoch count (the seed, the learning rate and the weight decay may differ). The one packing
    /// rule: the coordinator stores it with each job (`jobs.pack_key`) and packs jobs whose keys
    /// (and datasets) are equal; the worker's [`Hyperparameters::packs_with`] compares it.
    pub fn pack_key(&self) -> String {
        format!(
            "{}|{}|{}|{}",
            self.model.name,
            self.optimizer.as_str(),
            self.batch_size,
            self.max_epochs
        )
    }

    /// Whether two trials can train packed ([`Hyperparameters::pack_key`]).
    pub fn packs_with(&self, other: &Hyperparameters) -> bool {
        self.pack_key() == other.pack_key()
    }

    /// Refuses values no training can use, naming the field and the value. (The model and the
    /// optimizer are checked when their names are parsed.)
    pub fn validate(&self) -> Result<(), Error> {
        check_batch_size(self.batch_size)?;
        check_max_epochs(self.max_epochs)?;
        check_learning_rate(self.learning_rate)?;
        check_weight_decay(self.weight_decay)
    }
}

/// Batch size: 1 to [`MAX_BATCH_SIZE`].
pub fn check_batch_size(batch_size: u32) -> Result<(), Error> {
    if (1..=MAX_BATCH_SIZE).contains(&batch_size) {
        return Ok(());
    }
    Err(Error::Invalid {
        field: "batch_size",
        value: batch_size.to_string(),
        hint: format!("use a batch size from 1 to {MAX_BATCH_SIZE}, e.g. 128"),
    })
}

/// Epochs: 1 to [`MAX_EPOCHS`].
pub fn check_max_epochs(max_epochs: u32) -> Result<(), Error> {
    if (1..=MAX_EPOCHS).contains(&max_epochs) {
        return Ok(());
    }
    Err(Error::Invalid {
        field: "max_epochs",
        value: max_epochs.to_string(),
        hint: format!("use 1 to {MAX_EPOCHS} epochs"),
    })
}

/// Learning rate: positive and finite.
pub fn check_learning_rate(learning_rate: f64) -> Result<(), Error> {
    if learning_rate.is_finite() && learning_rate > 0.0 {
        return Ok(());
    }
    Err(Error::Invalid {
        field: "learning_rate",
        value: learning_rate.to_string(),
        hint: "use a positive finite number, e.g. 1e-3".into(),
    })
}

/// Weight decay: 0 (none) to [`MAX_WEIGHT_DECAY`].
pub fn check_weight_decay(weight_decay: f64) -> Result<(), Error> {
    if (0.0..=MAX_WEIGHT_DECAY).contains(&weight_decay) {
        return Ok(());
    }
    Err(Error::Invalid {
        field: "weight_decay",
        value: weight_decay.to_string(),
        hint: format!("use 0 (none, MASE's default) to {MAX_WEIGHT_DECAY}, e.g. 1e-4"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_mases_and_valid() {
        let d = Hyperparameters::default();
        assert_eq!(
            (
                d.model.name.as_str(),
                d.batch_size,
                d.max_epochs,
                d.learning_rate
            ),
            ("jsc-tiny", 128, 20, 1e-5)
        );
        d.validate().unwrap();
    }

    #[test]
    fn impossible_values_are_refused_by_field_and_value() {
        let d = Hyperparameters::default();
        for (bad, needles) in [
            (
                Hyperparameters {
                    batch_size: 0,
                    ..d.clone()
                },
                ["batch_size", "0"],
            ),
            (
                Hyperparameters {
                    max_epochs: 0,
                    ..d.clone()
                },
                ["max_epochs", "0"],
            ),
            (
                Hyperparameters {
                    max_epochs: u32::MAX,
                    ..d.clone()
                },
                ["max_epochs", "4294967295"],
            ),
            (
                Hyperparameters {
                    learning_rate: -1e-3,
                    ..d.clone()
                },
                ["learning_rate", "-0.001"],
            ),
            (
                Hyperparameters {
                    learning_rate: f64::NAN,
                    ..d.clone()
                },
                ["learning_rate", "NaN"],
            ),
            (
                Hyperparameters {
                    weight_decay: -1e-4,
                    ..d.clone()
                },
                ["weight_decay", "-0.0001"],
            ),
            (
                Hyperparameters {
                    weight_decay: f64::NAN,
                    ..d.clone()
                },
                ["weight_decay", "NaN"],
            ),
        ] {
            let err = bad.validate().unwrap_err().to_string();
            for n in needles {
                assert!(err.contains(n), "{err:?} lacks {n:?}");
            }
        }
        let err = "lbfgs".parse::<Optimizer>().unwrap_err().to_string();
        assert!(err.contains("lbfgs") && err.contains("adam"), "{err}");
    }
}
