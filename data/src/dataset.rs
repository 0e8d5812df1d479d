//! The prepared JSC dataset: what a trainer consumes, and the record of where it came from.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Input features per jet.
pub const NUM_FEATURES: usize = 16;
/// Jet classes.
pub const NUM_CLASSES: usize = 5;

/// The 16 high-level jet observables, in MASE's column order.
pub const FEATURE_NAMES: [&str; NUM_FEATURES] = [
    "j_zlogz",
    "j_c1_b0_mmdt",
    "j_c1_b1_mmdt",
    "j_c1_b2_mmdt",
    "j_c2_b1_mmdt",
    "j_c2_b2_mmdt",
    "j_d2_b1_mmdt",
    "j_d2_b2_mmdt",
    "j_d2_a1_b1_mmdt",
    "j_d2_a1_b2_mmdt",
    "j_m2_b1_mmdt",
    "j_m2_b2_mmdt",
    "j_n2_b1_mmdt",
    "j_n2_b2_mmdt",
    "j_mass_mmdt",
    "j_multiplicity",
];

/// Class names in MASE's label order: 0 = gluon, 1 = light quark, 2 = W, 3 = Z, 4 = top.
pub const CLASS_NAMES: [&str; NUM_CLASSES] = ["g", "q", "W", "Z", "t"];

/// Maps a class given by name (`g`, `q`, `w`, `z`, `t`, any case, optionally quoted) or by MASE index
/// (`0`..`4`) to MASE's label. Sources with another order (OpenML's alphabetical g,q,t,w,z) give names.
pub fn parse_label(text: &str) -> Option<u8> {
    let t = text.trim().trim_matches(|c| c == '\'' || c == '"');
    match t.to_ascii_lowercase().as_str() {
        "g" | "0" => Some(0),
        "q" | "1" => Some(1),
        "w" | "2" => Some(2),
        "z" | "3" => Some(3),
        "t" | "4" => Some(4),
        _ => None,
    }
}

/// Raw jets as read from a source, before any preprocessing. Row-major `[rows, 16]` features.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawTable {
    pub features: Vec<f32>,
    pub labels: Vec<u8>,
}

impl RawTable {
    pub fn rows(&self) -> usize {
        self.labels.len()
    }

    pub fn row(&self, i: usize) -> &[f32] {
        &self.features[i * NUM_FEATURES..(i + 1) * NUM_FEATURES]
    }

    pub fn push(&mut self, features: &[f32; NUM_FEATURES], label: u8) {
        self.features.extend_from_slice(features);
        self.labels.push(label);
    }
}

/// One split of a prepared dataset: `x` is row-major `[len, 16]` scaled features, `y` labels `0..5`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Split {
    pub x: Vec<f32>,
    pub y: Vec<u8>,
}

impl Split {
    pub fn len(&self) -> usize {
        self.y.len()
    }

    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }

    /// Rows per class, in label order.
    pub fn class_counts(&self) -> [usize; NUM_CLASSES] {
        let mut counts = [0; NUM_CLASSES];
        for &y in &self.y {
            counts[y as usize] += 1;
        }
        counts
    }
}

/// Which data a "validation" number was computed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ValidationKind {
    /// MASE's choice: the training split doubles as validation data.
    TrainAsVal,
    /// A real validation split carved from the training part and never trained on.
    HeldOut,
}

impl ValidationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ValidationKind::TrainAsVal => "train-as-val",
            ValidationKind::HeldOut => "held-out",
        }
    }
}

/// Where a prepared dataset came from and what was done to it; travels with every result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// What the rows are, e.g. `openml:42468`, `synthetic:200000`, `csv:/path/jets.csv`.
    pub source: String,
    /// True when the jets are generated, not measured; every report says so.
    pub synthetic: bool,
    /// sha256 of the raw source file, when there is one.
    pub source_sha256: Option<String>,
    /// Rows read from the source, before dropping duplicates.
    pub raw_rows: usize,
    pub duplicates_dropped: usize,
    pub train_rows: usize,
    pub val_rows: usize,
    pub test_rows: usize,
    /// Seed of the train/test (and validation) split; fixed (42, as MASE) unless overridden.
    pub split_seed: u64,
    /// Standard-scaler statistics fitted on the training rows (empty when the source was already scaled).
    pub scaler_mean: Vec<f32>,
    pub scaler_std: Vec<f32>,
    /// sha256 of the prepared arrays (see [`Prepared::content_sha256`]): the dataset's identity.
    pub sha256: String,
}

/// A dataset ready to train on.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    pub train: Split,
    /// A held-out validation split, if one was asked for; otherwise training data doubles as validation.
    pub val: Option<Split>,
    pub test: Split,
    pub provenance: Provenance,
}

impl Prepared {
    /// The split to validate on, and which kind it is.
    pub fn validation(&self) -> (&Split, ValidationKind) {
        match &self.val {
            Some(v) => (v, ValidationKind::HeldOut),
            None => (&self.train, ValidationKind::TrainAsVal),
        }
    }

    /// sha256 over the prepared arrays (train, validation, test; little-endian), hex encoded.
    pub fn content_sha256(&self) -> String {
        let mut h = Sha256::new();
        let empty = Split::default();
        for split in [&self.train, self.val.as_ref().unwrap_or(&empty), &self.test] {
            h.update((split.len() as u64).to_le_bytes());
            for chunk in split.x.chunks(8192) {
                h.update(f32s_to_le_bytes(chunk));
            }
            h.update(&split.y);
        }
        hex(&h.finalize())
    }
}

/// Lower-case hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The little-endian bytes of some f32 values (the byte order of every file jetsweep writes).
pub(crate) fn f32s_to_le_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// f32 values from little-endian bytes; `bytes.len()` must be a multiple of 4.
pub(crate) fn f32s_from_le_bytes(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}
