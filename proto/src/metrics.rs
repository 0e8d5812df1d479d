//! What a trial measures: one [`EpochMetrics`] per epoch, and a [`TrialResult`] at the end. The
//! trainer produces them, the wire carries them, the store keeps them (as JSON, with these names).

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::trial::MAX_EPOCHS;

/// Most parameters a reported model may claim (the widest `mlp:` is far below).
const MAX_PARAMS: u64 = 1 << 40;

/// A number a report must carry: finite, and within `range`.
fn check(
    field: &'static str,
    value: f64,
    range: std::ops::RangeInclusive<f64>,
) -> Result<(), Error> {
    if value.is_finite() && range.contains(&value) {
        return Ok(());
    }
    // Bounds as short as they can be written (f64::MAX is 309 digits in full).
    let bound = |b: f64| {
        if b.abs() >= 1e6 {
            format!("{b:e}")
        } else {
            b.to_string()
        }
    };
    Err(Error::Invalid {
        field,
        value: value.to_string(),
        hint: format!(
            "must be a finite number from {} to {} (a trial that diverged is reported as a failure, not as numbers)",
            bound(*range.start()),
            bound(*range.end())
        ),
    })
}

/// Epoch numbers run from 1 to [`MAX_EPOCHS`].
fn check_epoch(field: &'static str, epoch: u32) -> Result<(), Error> {
    if (1..=MAX_EPOCHS).contains(&epoch) {
        return Ok(());
    }
    Err(Error::Invalid {
        field,
        value: epoch.to_string(),
        hint: format!("epochs are numbered 1 to {MAX_EPOCHS}"),
    })
}

/// What one epoch measured. Losses are means over samples; accuracies are top-1 fractions.
/// Validation numbers are on the dataset's validation data (see [`crate::dataset::DatasetRef`]:
/// the training split itself, as MASE does, unless it has a held-out split).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// 1-based.
    pub epoch: u32,
    /// The learning rate this epoch trained with.
    pub lr: f64,
    pub train_loss: f64,
    pub train_acc: f64,
    pub val_loss: f64,
    pub val_acc: f64,
    pub test_loss: f64,
    pub test_acc: f64,
    /// Wall time of the epoch (training pass and evaluation), this trial's share of it when a
    /// pack trained several together; and the training pass's throughput over its share of that
    /// pass.
    pub seconds: f64,
    pub samples_per_second: f64,
}

impl EpochMetrics {
    /// The epoch number and every number measured about the training, without the wall-clock ones
    /// (seconds, samples per second), which differ between runs that trained identically.
    pub fn training_numbers(&self) -> [f64; 8] {
        [
            f64::from(self.epoch),
            self.lr,
            self.train_loss,
            self.train_acc,
            self.val_loss,
            self.val_acc,
            self.test_loss,
            self.test_acc,
        ]
    }

    /// Refuses what no real epoch measures: a non-finite number, an accuracy outside [0, 1], a
    /// negative loss or time, an epoch number out of range. Stored metrics pass this, so a sweep
    /// always reads back.
    pub fn check(&self) -> Result<(), Error> {
        const ANY: std::ops::RangeInclusive<f64> = 0.0..=f64::MAX;
        check_epoch("epoch", self.epoch)?;
        check("lr", self.lr, ANY)?;
        check("train_loss", self.train_loss, ANY)?;
        check("train_acc", self.train_acc, 0.0..=1.0)?;
        check("val_loss", self.val_loss, ANY)?;
        check("val_acc", self.val_acc, 0.0..=1.0)?;
        check("test_loss", self.test_loss, ANY)?;
        check("test_acc", self.test_acc, 0.0..=1.0)?;
        check("seconds", self.seconds, ANY)?;
        check("samples_per_second", self.samples_per_second, ANY)
    }
}

/// A finished trial's outcome.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TrialResult {
    /// Trainable parameters of the model.
    pub params: u64,
    /// Test accuracy after the last epoch.
    pub test_acc: f64,
    /// The epoch with the lowest validation loss, and the test accuracy there (MASE's `best.ckpt`).
    pub best_epoch: u32,
    pub best_test_acc: f64,
}

/// What the coordinator reads off a finished trial's stored epochs (each epoch as its latest
/// attempt reported it, so a resumed trial counts every epoch once): the validation numbers at the
/// best epoch, where the time went, and the final losses. The worker never sends it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct EpochSummary {
    /// Validation loss and accuracy at the best epoch (the one with the lowest validation loss):
    /// what a grid point is chosen on, never the test numbers.
    pub best_val_loss: f64,
    pub best_val_acc: f64,
    /// The trial's seconds (its share of its pack's), summed over epochs (training and evaluation).
    pub train_seconds: f64,
    /// Training samples per second of training pass.
    pub samples_per_second: f64,
    /// Training and test loss after the last epoch.
    pub final_train_loss: f64,
    pub final_test_loss: f64,
}

impl EpochSummary {
    /// The summary of `epochs` (any order, one per epoch number) for a trial whose best epoch is
    /// `best_epoch`; `None` when that epoch or any before the last was not reported.
    pub fn of(epochs: &[EpochMetrics], best_epoch: u32) -> Option<EpochSummary> {
        let best = epochs.iter().find(|m| m.epoch == best_epoch)?;
        let last = epochs.iter().max_by_key(|m| m.epoch)?;
        if epochs.len() != last.epoch as usize {
            return None;
        }
        let train_seconds: f64 = epochs.iter().map(|m| m.seconds).sum();
        let samples: f64 = epochs
            .iter()
            .map(|m| m.seconds * m.samples_per_second)
            .sum();
        Some(EpochSummary {
            best_val_loss: best.val_loss,
            best_val_acc: best.val_acc,
            train_seconds,
            samples_per_second: if train_seconds > 0.0 {
                samples / train_seconds
            } else {
                0.0
            },
            final_train_loss: last.train_loss,
            final_test_loss: last.test_loss,
        })
    }
}

impl TrialResult {
    /// Refuses a result no trial produces (see [`EpochMetrics::check`]).
    pub fn check(&self) -> Result<(), Error> {
        if self.params > MAX_PARAMS {
            return Err(Error::Invalid {
                field: "params",
                value: self.params.to_string(),
                hint: format!("at most {MAX_PARAMS}"),
            });
        }
        check("test_acc", self.test_acc, 0.0..=1.0)?;
        check_epoch("best_epoch", self.best_epoch)?;
        check("best_test_acc", self.best_test_acc, 0.0..=1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch() -> EpochMetrics {
        EpochMetrics {
            epoch: 1,
            lr: 1e-3,
            train_loss: 1.2,
            train_acc: 0.5,
            val_loss: 1.3,
            val_acc: 0.45,
            test_loss: 1.3,
            test_acc: 0.44,
            seconds: 0.2,
            samples_per_second: 1e6,
        }
    }

    #[test]
    fn real_numbers_pass_and_impossible_ones_are_refused_by_field() {
        epoch().check().unwrap();
        for (bad, field) in [
            (
                EpochMetrics {
                    train_loss: f64::NAN,
                    ..epoch()
                },
                "train_loss",
            ),
            (
                EpochMetrics {
                    test_acc: f64::INFINITY,
                    ..epoch()
                },
                "test_acc",
            ),
            (
                EpochMetrics {
                    val_acc: 1.5,
                    ..epoch()
                },
                "val_acc",
            ),
            (
                EpochMetrics {
                    seconds: -1.0,
                    ..epoch()
                },
                "seconds",
            ),
            (
                EpochMetrics {
                    epoch: 0,
                    ..epoch()
                },
                "epoch",
            ),
            (
                EpochMetrics {
                    epoch: u32::MAX,
                    ..epoch()
                },
                "epoch",
            ),
        ] {
            assert_eq!(bad.check().unwrap_err().field(), Some(field));
        }
        let good = TrialResult {
            params: 117,
            test_acc: 0.7,
            best_epoch: 3,
            best_test_acc: 0.71,
        };
        good.check().unwrap();
        let bad = TrialResult {
            best_test_acc: f64::NAN,
            ..good.clone()
        };
        assert_eq!(bad.check().unwrap_err().field(), Some("best_test_acc"));
        let bad = TrialResult {
            params: u64::MAX,
            ..good
        };
        assert_eq!(bad.check().unwrap_err().field(), Some("params"));
    }
}
