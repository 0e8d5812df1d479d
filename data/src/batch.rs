//! Mini-batches: a fresh shuffle of the training rows every epoch, derived from the trial's seed, and
//! batches of `batch_size` rows with the last partial batch kept (PyTorch's `drop_last=False`).

use std::ops::Range;

use crate::dataset::{NUM_FEATURES, Split};
use crate::rng::SplitMix64;

/// The order in which epoch `epoch` (0-based) visits the `rows` training rows for trial seed `seed`.
/// Independent of batch size, so two trials that differ only in batch size see the same order.
pub fn epoch_order(rows: usize, seed: u64, epoch: usize) -> Vec<u32> {
    let mut order = Vec::new();
    epoch_order_into(rows, seed, epoch, &mut order);
    order
}

/// [`epoch_order`] written into `order`, reusing its memory (a trainer that runs many epochs of
/// many trials then allocates their orders once).
pub fn epoch_order_into(rows: usize, seed: u64, epoch: usize, order: &mut Vec<u32>) {
    order.clear();
    order.extend(0..rows as u32);
    SplitMix64::derive(seed, "epoch-order", epoch as u64).shuffle(order);
}

/// Consecutive ranges of at most `batch_size` positions covering `0..rows`; the last may be short.
pub fn batch_ranges(rows: usize, batch_size: usize) -> impl Iterator<Item = Range<usize>> {
    assert!(batch_size > 0, "batch size must be positive");
    (0..rows)
        .step_by(batch_size)
        .map(move |start| start..(start + batch_size).min(rows))
}

/// Number of optimizer steps in one epoch.
pub fn steps_per_epoch(rows: usize, batch_size: usize) -> usize {
    rows.div_ceil(batch_size)
}

/// Copies the given rows of `split` into `x` (row-major `[len, 16]`) and `y`, replacing their contents.
/// Labels are i32, the integer type burn's backends use. The buffers are reused across steps, so the hot loop does not allocate for the gather itself.
pub fn gather(split: &Split, rows: &[u32], x: &mut Vec<f32>, y: &mut Vec<i32>) {
    x.clear();
    y.clear();
    for &r in rows {
        let r = r as usize;
        x.extend_from_slice(&split.x[r * NUM_FEATURES..(r + 1) * NUM_FEATURES]);
        y.push(i32::from(split.y[r]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_partial_batch_is_kept() {
        let r: Vec<_> = batch_ranges(10, 4).collect();
        assert_eq!(r, vec![0..4, 4..8, 8..10]);
        assert_eq!(steps_per_epoch(10, 4), 3);
        assert_eq!(batch_ranges(8, 4).count(), 2);
    }

    #[test]
    fn every_epoch_is_a_new_permutation_and_reproducible() {
        let a = epoch_order(1000, 0, 0);
        assert_eq!(a, epoch_order(1000, 0, 0));
        assert_ne!(a, epoch_order(1000, 0, 1));
        assert_ne!(a, epoch_order(1000, 1, 0));
        let mut s = a.clone();
        s.sort();
        assert_eq!(s, (0..1000).collect::<Vec<u32>>());
    }

    #[test]
    fn gather_copies_the_chosen_rows() {
        let split = Split {
            x: (0..48).map(|v| v as f32).collect(),
            y: vec![0, 1, 2],
        };
        let (mut x, mut y) = (Vec::new(), Vec::new());
        gather(&split, &[2, 0], &mut x, &mut y);
        assert_eq!(y, vec![2, 0]);
        assert_eq!(x[0], 32.0);
        assert_eq!(x[16], 0.0);
        assert_eq!(x.len(), 32);
    }
}
