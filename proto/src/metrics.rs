//! What a trial measures: one [`EpochMetrics`] per epoch, and a [`TrialResult`] at the end. The
//! trainer produces them, the wire carries them, the store keeps them (as JSON, with these names).

use serde::{Deserialize, Serialize};

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
    /// Wall time of the training pass alone (no evaluation), and its throughput.
    pub seconds: f64,
    pub samples_per_second: f64,
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
