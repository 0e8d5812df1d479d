//! The coordinator's copy of every dataset a sweep uses: prepared once at submission (the same
//! preparation a worker would do), stored as `<data>/datasets/<sha256>.jsd`, and served to workers that
//! lack it. The sha256 is the prepared content's hash, the dataset's identity in every job id.

use std::path::{Path, PathBuf};

use jetsweep_data::preprocess::PrepareOptions;
use jetsweep_data::{DatasetSpec, LoadOptions, cache};

use jetsweep_proto::dataset::DatasetRef;

use crate::Error;

/// Where prepared datasets live under the coordinator's data folder.
pub fn dataset_path(data_dir: &Path, sha256: &str) -> PathBuf {
    data_dir
        .join("datasets")
        .join(format!("{sha256}.{}", cache::EXTENSION))
}

/// Prepares `spec` (downloading or reading it as needed, through the cache under `data_dir`) and
/// stores the prepared file; returns its reference. Slow for big sources: call off the async threads.
pub fn prepare(
    data_dir: &Path,
    spec: &DatasetSpec,
    val_fraction: f64,
) -> Result<DatasetRef, Error> {
    let options = LoadOptions {
        cache_dir: data_dir.join("cache"),
        prepare: PrepareOptions {
            val_fraction,
            ..PrepareOptions::default()
        },
        openml_url: None,
        progress: false,
    };
    let prepared = jetsweep_data::load(spec, &options)?;
    let sha256 = prepared.provenance.sha256.clone();
    let path = dataset_path(data_dir, &sha256);
    if !path.is_file() {
        cache::save(&prepared, &path)?;
    }
    let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    Ok(DatasetRef {
        spec: spec.to_string(),
        sha256,
        bytes,
        synthetic: prepared.provenance.synthetic,
        validation: prepared.validation().1,
    })
}
