//! The coordinator's copy of every dataset a sweep uses: prepared once at submission (the same
//! preparation a worker would do), stored as `<data>/datasets/<sha256>.jsd`, and served to workers that
//! lack it. The sha256 is the prepared content's hash, the dataset's identity in every job id.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

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

/// Removes the prepared datasets that no queued or running job needs (`needed`, by sha256) and
/// that were last prepared or used before `unused_since`; returns the hashes removed. A sweep that
/// names one again prepares it again; workers keep their own copies. Files that are not prepared
/// datasets are left alone.
pub fn remove_unused(
    data_dir: &Path,
    needed: &HashSet<String>,
    unused_since: SystemTime,
) -> std::io::Result<Vec<String>> {
    let dir = data_dir.join("datasets");
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut removed = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let Some(sha256) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(&format!(".{}", cache::EXTENSION)))
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        else {
            continue;
        };
        let old = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t < unused_since);
        if old && !needed.contains(sha256) {
            std::fs::remove_file(&path)?;
            removed.push(sha256.to_string());
        }
    }
    Ok(removed)
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
    if path.is_file() {
        // Used again: the clean-up keeps files used within its grace (see `remove_unused`).
        let _ = std::fs::File::options()
            .append(true)
            .open(&path)
            .and_then(|f| f.set_modified(std::time::SystemTime::now()));
    } else {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn only_old_datasets_no_job_needs_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let spec: DatasetSpec = "synthetic:1000".parse().unwrap();
        let used = prepare(dir.path(), &spec, 0.0).unwrap().sha256;
        let spec: DatasetSpec = "synthetic:1200".parse().unwrap();
        let unused = prepare(dir.path(), &spec, 0.0).unwrap().sha256;
        let stranger = dir.path().join("datasets").join("notes.txt");
        std::fs::write(&stranger, "not a dataset").unwrap();
        let needed = HashSet::from([used.clone()]);
        let now = SystemTime::now();

        // Within the grace nothing goes, needed or not.
        let earlier = now - Duration::from_secs(3600);
        assert!(
            remove_unused(dir.path(), &needed, earlier)
                .unwrap()
                .is_empty()
        );
        // Past it, the one no job needs goes; the needed one and other files stay.
        let later = now + Duration::from_secs(1);
        assert_eq!(
            remove_unused(dir.path(), &needed, later).unwrap(),
            vec![unused.clone()]
        );
        assert!(dataset_path(dir.path(), &used).is_file());
        assert!(!dataset_path(dir.path(), &unused).exists());
        assert!(stranger.is_file());
        // Named again, it is prepared again.
        let spec: DatasetSpec = "synthetic:1200".parse().unwrap();
        assert_eq!(prepare(dir.path(), &spec, 0.0).unwrap().sha256, unused);
        assert!(dataset_path(dir.path(), &unused).is_file());
    }
}
