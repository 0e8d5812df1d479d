//! The engines: what computes a pack's steps, evaluations and state for the one epoch loop
//! ([`super::epochs`]). Three, each for a reason: `loops` is the fastest on a CPU core, `tensor`
//! runs on any burn backend (GPUs), `autodiff` is burn's own autodiff and optimizer on one trial —
//! the reference the other two are checked against, step by step (`engine_tests.rs`).

pub(super) mod autodiff;
pub(super) mod loops;
pub(super) mod state;
pub(crate) mod tensor;
