//! MASE's `ch train` recipe as numbers: every constant the engines and the model share, in one
//! place, each with where it comes from. An engine that needs another type converts at its use
//! (`BN_EPSILON as f32`), so no second copy of a value can drift.

/// PyTorch's BatchNorm1d ε (`eps=1e-5`).
pub const BN_EPSILON: f64 = 1e-5;
/// PyTorch's BatchNorm1d momentum for the running statistics (`momentum=0.1`).
pub const BN_MOMENTUM: f64 = 0.1;
/// Adam's β1 and β2 (PyTorch's and burn's defaults).
pub const ADAM_BETA1: f32 = 0.9;
pub const ADAM_BETA2: f32 = 0.999;
/// PyTorch's Adam ε (burn's default is 1e-5).
pub const ADAM_EPSILON: f32 = 1e-8;
/// Floor of the cosine schedule (MASE passes `eta_min=1e-6`).
pub const ETA_MIN: f64 = 1e-6;

/// PyTorch's CosineAnnealingLR (closed form, T_max = `max_epochs`) for 0-based `epoch`: the
/// learning rate of that whole epoch (the schedule is stepped once per epoch).
pub fn cosine_lr(base_lr: f64, epoch: usize, max_epochs: usize) -> f64 {
    let progress = epoch as f64 / max_epochs as f64;
    ETA_MIN + (base_lr - ETA_MIN) * (1.0 + (std::f64::consts::PI * progress).cos()) / 2.0
}
