//! MASE's preprocessing recipe (`_preprocess_jsc_dataset`): drop duplicate rows, split 80/20 with a
//! fixed seed, and standard-scale with statistics fitted on the training part only (population std).
//!
//! The split uses our own seeded shuffle, not NumPy's MT19937, so it is the same recipe but not the
//! same row membership as MASE's sklearn call; every result records the split seed it used.

use std::collections::HashSet;

use crate::dataset::{NUM_FEATURES, Prepared, Provenance, RawTable, Split};
use crate::rng::SplitMix64;
use crate::{DataError, Result};

/// MASE's `train_test_split(..., random_state=42)`.
pub const DEFAULT_SPLIT_SEED: u64 = 42;
/// MASE holds out 20% for test.
pub const TEST_FRACTION: f64 = 0.2;

/// How to turn raw jets into a prepared dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct PrepareOptions {
    pub split_seed: u64,
    /// Fraction of the training part carved off as a held-out validation split; 0 means MASE's
    /// train-as-val.
    pub val_fraction: f64,
}

impl Default for PrepareOptions {
    fn default() -> Self {
        Self {
            split_seed: DEFAULT_SPLIT_SEED,
            val_fraction: 0.0,
        }
    }
}

impl PrepareOptions {
    pub fn validate(&self) -> Result<()> {
        if !(0.0..0.9).contains(&self.val_fraction) {
            return Err(DataError::Invalid(format!(
                "validation fraction {} is out of range: use 0 (train-as-val, as MASE) or a fraction below 0.9",
                self.val_fraction
            )));
        }
        Ok(())
    }
}

/// Drops exact duplicate rows (all 16 features and the label, compared bit for bit), keeping the
/// first occurrence, as pandas' `drop_duplicates()`. Returns the table and how many rows were dropped.
pub fn drop_duplicates(raw: RawTable) -> (RawTable, usize) {
    let mut seen: HashSet<[u32; NUM_FEATURES + 1]> = HashSet::with_capacity(raw.rows());
    let mut out = RawTable {
        features: Vec::with_capacity(raw.features.len()),
        labels: Vec::with_capacity(raw.rows()),
    };
    for i in 0..raw.rows() {
        let mut key = [0u32; NUM_FEATURES + 1];
        for (k, v) in key.iter_mut().zip(raw.row(i)) {
            // +0.0 and -0.0 are equal values: pandas treats them as duplicates.
            *k = if *v == 0.0 { 0 } else { v.to_bits() };
        }
        key[NUM_FEATURES] = u32::from(raw.labels[i]);
        if seen.insert(key) {
            out.features.extend_from_slice(raw.row(i));
            out.labels.push(raw.labels[i]);
        }
    }
    let dropped = raw.rows() - out.rows();
    (out, dropped)
}

/// Splits `0..n` into (train, test) index lists: a seeded shuffle, then `ceil(0.2 n)` rows for test
/// (sklearn's rounding rule).
pub fn split_indices(n: usize, seed: u64, test_fraction: f64) -> (Vec<u32>, Vec<u32>) {
    let mut order = SplitMix64::derive(seed, "train-test-split", 0).permutation(n);
    let n_test = (test_fraction * n as f64).ceil() as usize;
    let train = order.split_off(n_test);
    (train, order)
}

/// Per-feature mean and population standard deviation of the given rows (f64 accumulation).
/// A constant feature gets std 1, as sklearn's StandardScaler does, so it scales to 0 rather than NaN.
#[derive(Debug, Clone, PartialEq)]
pub struct Scaler {
    pub mean: [f64; NUM_FEATURES],
    pub std: [f64; NUM_FEATURES],
}

impl Scaler {
    pub fn fit(table: &RawTable, rows: &[u32]) -> Scaler {
        let mut mean = [0f64; NUM_FEATURES];
        for &r in rows {
            for (m, v) in mean.iter_mut().zip(table.row(r as usize)) {
                *m += f64::from(*v);
            }
        }
        let n = rows.len().max(1) as f64;
        mean.iter_mut().for_each(|m| *m /= n);
        let mut var = [0f64; NUM_FEATURES];
        for &r in rows {
            for ((s, v), m) in var.iter_mut().zip(table.row(r as usize)).zip(&mean) {
                *s += (f64::from(*v) - m).powi(2);
            }
        }
        let std = var.map(|s| {
            let sd = (s / n).sqrt();
            if sd > 0.0 && sd.is_finite() { sd } else { 1.0 }
        });
        Scaler { mean, std }
    }

    /// Scaled copies of the given rows.
    pub fn apply(&self, table: &RawTable, rows: &[u32]) -> Split {
        let mut x = Vec::with_capacity(rows.len() * NUM_FEATURES);
        let mut y = Vec::with_capacity(rows.len());
        for &r in rows {
            for ((v, m), s) in table.row(r as usize).iter().zip(&self.mean).zip(&self.std) {
                x.push(((f64::from(*v) - m) / s) as f32);
            }
            y.push(table.labels[r as usize]);
        }
        Split { x, y }
    }
}

/// What a source says about itself, before preprocessing.
#[derive(Debug, Clone)]
pub struct SourceInfo {
    pub source: String,
    pub synthetic: bool,
    pub source_sha256: Option<String>,
}

/// The whole recipe: dedup, split, fit the scaler on the training rows, scale everything.
pub fn prepare(raw: RawTable, info: SourceInfo, options: &PrepareOptions) -> Result<Prepared> {
    options.validate()?;
    let raw_rows = raw.rows();
    let (table, duplicates_dropped) = drop_duplicates(raw);
    if table.rows() < 10 {
        return Err(DataError::Invalid(format!(
            "{}: only {} distinct rows; a dataset needs at least 10 to split into train and test",
            info.source,
            table.rows()
        )));
    }
    let (mut train_rows, test_rows) =
        split_indices(table.rows(), options.split_seed, TEST_FRACTION);
    let val_rows = if options.val_fraction > 0.0 {
        let n_val = (options.val_fraction * train_rows.len() as f64).ceil() as usize;
        // The first rows of an already shuffled list are a random sample.
        let rest = train_rows.split_off(n_val);
        Some(std::mem::replace(&mut train_rows, rest))
    } else {
        None
    };
    let scaler = Scaler::fit(&table, &train_rows);
    let train = scaler.apply(&table, &train_rows);
    let test = scaler.apply(&table, &test_rows);
    let val = val_rows.map(|rows| scaler.apply(&table, &rows));
    let mut prepared = Prepared {
        provenance: Provenance {
            source: info.source,
            synthetic: info.synthetic,
            source_sha256: info.source_sha256,
            raw_rows,
            duplicates_dropped,
            train_rows: train.len(),
            val_rows: val.as_ref().map_or(0, Split::len),
            test_rows: test.len(),
            split_seed: options.split_seed,
            scaler_mean: scaler.mean.iter().map(|&m| m as f32).collect(),
            scaler_std: scaler.std.iter().map(|&s| s as f32).collect(),
            sha256: String::new(),
        },
        train,
        val,
        test,
    };
    prepared.provenance.sha256 = prepared.content_sha256();
    Ok(prepared)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(rows: usize) -> RawTable {
        let mut t = RawTable::default();
        for i in 0..rows {
            let mut f = [0f32; NUM_FEATURES];
            for (j, v) in f.iter_mut().enumerate() {
                *v = (i * (j + 1)) as f32 + 0.5 * j as f32;
            }
            t.push(&f, (i % 5) as u8);
        }
        t
    }

    #[test]
    fn duplicates_are_dropped_keeping_the_first() {
        let mut t = table(20);
        let dup = t.row(3).to_vec();
        t.push(&dup.clone().try_into().unwrap(), t.labels[3]);
        // Same features, different label: not a duplicate.
        t.push(&dup.try_into().unwrap(), (t.labels[3] + 1) % 5);
        let (out, dropped) = drop_duplicates(t.clone());
        assert_eq!(dropped, 1);
        assert_eq!(out.rows(), 21);
        assert_eq!(out.row(3), t.row(3));
        assert_eq!(out.labels[20], (t.labels[3] + 1) % 5);
    }

    #[test]
    fn split_is_80_20_disjoint_complete_and_seeded() {
        let (train, test) = split_indices(1001, 42, TEST_FRACTION);
        assert_eq!(test.len(), 201); // ceil(200.2)
        assert_eq!(train.len(), 800);
        let mut all: Vec<u32> = train.iter().chain(&test).copied().collect();
        all.sort();
        assert_eq!(all, (0..1001).collect::<Vec<u32>>());
        assert_eq!(split_indices(1001, 42, TEST_FRACTION).1, test);
        assert_ne!(split_indices(1001, 43, TEST_FRACTION).1, test);
    }

    #[test]
    fn scaler_is_fitted_on_train_only_with_population_std() {
        let raw = table(500);
        let prepared = prepare(
            raw.clone(),
            SourceInfo {
                source: "test".into(),
                synthetic: true,
                source_sha256: None,
            },
            &PrepareOptions::default(),
        )
        .unwrap();
        // Training features have mean 0 and population std 1 in every column...
        let n = prepared.train.len() as f64;
        for j in 0..NUM_FEATURES {
            let col: Vec<f64> = prepared
                .train
                .x
                .iter()
                .skip(j)
                .step_by(NUM_FEATURES)
                .map(|&v| f64::from(v))
                .collect();
            let mean = col.iter().sum::<f64>() / n;
            let var = col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
            assert!(mean.abs() < 1e-5, "feature {j} mean {mean}");
            assert!(
                (var - 1.0).abs() < 1e-4 || j == 0 && var < 1e-9,
                "feature {j} var {var}"
            );
        }
        // ...and the scaler's statistics are exactly those of the training rows, not of all rows.
        let (train_rows, _) = split_indices(500, 42, TEST_FRACTION);
        let fitted = Scaler::fit(&raw, &train_rows);
        let all = Scaler::fit(&raw, &(0..500).collect::<Vec<u32>>());
        assert_eq!(prepared.provenance.scaler_mean[5], fitted.mean[5] as f32);
        assert_ne!(prepared.provenance.scaler_mean[5], all.mean[5] as f32);
        assert_eq!(
            prepared.provenance.train_rows + prepared.provenance.test_rows,
            500
        );
    }

    #[test]
    fn held_out_validation_is_carved_from_the_training_part() {
        let prepared = prepare(
            table(1000),
            SourceInfo {
                source: "test".into(),
                synthetic: true,
                source_sha256: None,
            },
            &PrepareOptions {
                val_fraction: 0.25,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(prepared.test.len(), 200);
        assert_eq!(prepared.val.as_ref().unwrap().len(), 200);
        assert_eq!(prepared.train.len(), 600);
        assert_eq!(prepared.validation().1, crate::ValidationKind::HeldOut);
    }
}
