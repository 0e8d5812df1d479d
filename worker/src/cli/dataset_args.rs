//! The dataset options shared by every subcommand that loads data.

use std::path::PathBuf;

use clap::Args;
use jetsweep_data::preprocess::{DEFAULT_SPLIT_SEED, PrepareOptions};
use jetsweep_data::{DatasetSpec, LoadOptions, Prepared};

#[derive(Debug, Clone, Args)]
pub struct DatasetArgs {
    /// Dataset: `synthetic` (offline generator, 200k jets), `synthetic:ROWS`, `openml` (OpenML 42468,
    /// downloaded on first use), a .csv file, MASE's .z/.h5 file, a prepared .jsd file, or a directory
    /// of .npy files (x_train.npy, y_train.npy, x_test.npy, y_test.npy).
    #[arg(long, default_value = "synthetic", value_parser = parse_dataset)]
    pub dataset: DatasetSpec,

    /// Carve this fraction of the training part off as a held-out validation split. 0 keeps MASE's
    /// choice: the training data doubles as validation data ("train-as-val").
    #[arg(long, default_value_t = 0.0, value_name = "FRACTION")]
    pub val_fraction: f64,

    /// Seed of the 80/20 train/test split (MASE fixes it at 42, independent of the training seed).
    #[arg(long, default_value_t = DEFAULT_SPLIT_SEED)]
    pub split_seed: u64,

    /// Folder for downloads and prepared datasets [default: $JETSWEEP_CACHE_DIR or ~/.cache/jetsweep].
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
}

fn parse_dataset(s: &str) -> Result<DatasetSpec, String> {
    s.parse()
        .map_err(|e: jetsweep_data::DataError| e.to_string())
}

impl DatasetArgs {
    pub fn load(&self) -> anyhow::Result<Prepared> {
        let mut options = LoadOptions {
            prepare: PrepareOptions {
                split_seed: self.split_seed,
                val_fraction: self.val_fraction,
            },
            ..LoadOptions::default()
        };
        if let Some(dir) = &self.cache_dir {
            options.cache_dir = dir.clone();
        }
        Ok(jetsweep_data::load(&self.dataset, &options)?)
    }
}

/// One line saying which data a run used, and whether it is synthetic.
pub fn describe(data: &Prepared) -> String {
    let p = &data.provenance;
    let kind = if p.synthetic {
        "SYNTHETIC jets (generated offline, not real data)"
    } else {
        "real jets"
    };
    format!(
        "data: {} — {kind}; train {} / val {} / test {} rows; sha256 {}",
        p.source,
        p.train_rows,
        if p.val_rows > 0 {
            p.val_rows.to_string()
        } else {
            "= train".into()
        },
        p.test_rows,
        &p.sha256[..16.min(p.sha256.len())]
    )
}
