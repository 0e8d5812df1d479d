//! Where a dataset comes from, named by one string (`--dataset`), and the single entry point [`load`]
//! that turns it into a [`Prepared`] dataset, through the cache when the source is a file or download.
//!
//! | spec                 | meaning                                                          |
//! |----------------------|------------------------------------------------------------------|
//! | `synthetic[:ROWS]`   | the offline generator ([`crate::synthetic`])                     |
//! | `openml`             | OpenML 42468, downloaded and verified on first use               |
//! | `PATH.csv`           | a CSV the user has ([`crate::csv_source`])                       |
//! | `PATH.z`, `PATH.h5`  | MASE's HDF5 file (needs the `hdf5` feature)                      |
//! | `PATH.jsd`           | a prepared dataset file ([`crate::cache`])                       |
//! | `DIR`                | a directory in the `.npy` exchange layout ([`crate::npy`])       |

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use sha2::{Digest, Sha256};

use crate::dataset::{Prepared, hex};
use crate::preprocess::{PrepareOptions, SourceInfo, prepare};
use crate::{DataError, Result, cache, csv_source, npy, openml, synthetic};

/// Environment variable naming the cache folder (downloads and prepared datasets).
pub const CACHE_DIR_ENV: &str = "JETSWEEP_CACHE_DIR";

/// A dataset named on the command line or in a sweep file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatasetSpec {
    Synthetic { rows: usize },
    OpenMl,
    Csv(PathBuf),
    Hdf5(PathBuf),
    PreparedFile(PathBuf),
    NpyDir(PathBuf),
}

/// Longest dataset reference accepted: a path (Linux's PATH_MAX) or a source name.
pub const MAX_SPEC_BYTES: usize = 4096;
/// How much of an unusable reference an error quotes.
const MAX_SHOWN_CHARS: usize = 200;

impl FromStr for DatasetSpec {
    type Err = DataError;

    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        if s.len() > MAX_SPEC_BYTES {
            return Err(DataError::Invalid(format!(
                "dataset reference of {} bytes: use at most {MAX_SPEC_BYTES} (a path or a source name)",
                s.len()
            )));
        }
        if s == "synthetic" {
            return Ok(DatasetSpec::Synthetic {
                rows: synthetic::DEFAULT_ROWS,
            });
        }
        if let Some(rows) = s.strip_prefix("synthetic:") {
            let rows: usize = rows.replace('_', "").parse().map_err(|_| {
                DataError::Invalid(format!(
                    "synthetic row count {:?} is not a whole number (e.g. synthetic:50000)",
                    rows.chars().take(32).collect::<String>()
                ))
            })?;
            if rows < 100 {
                return Err(DataError::Invalid(format!(
                    "synthetic:{rows} is too small: use at least 100 rows"
                )));
            }
            if rows > synthetic::MAX_ROWS {
                return Err(DataError::Invalid(format!(
                    "synthetic:{rows} is too large: use at most {} rows (more than the real dataset's 830,000)",
                    synthetic::MAX_ROWS
                )));
            }
            return Ok(DatasetSpec::Synthetic { rows });
        }
        if s == "openml" || s == format!("openml:{}", openml::DATASET_ID) {
            return Ok(DatasetSpec::OpenMl);
        }
        let path = PathBuf::from(s);
        if path.is_dir() {
            return Ok(DatasetSpec::NpyDir(path));
        }
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        let spec = match ext.as_deref() {
            Some("csv") => DatasetSpec::Csv(path.clone()),
            Some("z" | "h5" | "hdf5") => DatasetSpec::Hdf5(path.clone()),
            Some(cache::EXTENSION) => DatasetSpec::PreparedFile(path.clone()),
            _ => {
                return Err(DataError::UnknownDataset(
                    s.chars().take(MAX_SHOWN_CHARS).collect(),
                ));
            }
        };
        if !path.is_file() {
            return Err(DataError::io(
                &path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            ));
        }
        Ok(spec)
    }
}

impl fmt::Display for DatasetSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatasetSpec::Synthetic { rows } => write!(f, "synthetic:{rows}"),
            DatasetSpec::OpenMl => write!(f, "openml:{}", openml::DATASET_ID),
            DatasetSpec::Csv(p)
            | DatasetSpec::Hdf5(p)
            | DatasetSpec::PreparedFile(p)
            | DatasetSpec::NpyDir(p) => {
                write!(f, "{}", p.display())
            }
        }
    }
}

/// How to load: where the cache is, how to prepare, where OpenML is.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub cache_dir: PathBuf,
    pub prepare: PrepareOptions,
    /// OpenML base URL; `None` means `JETSWEEP_OPENML_URL` or openml.org.
    pub openml_url: Option<String>,
    /// Show a progress bar on stderr for downloads.
    pub progress: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            cache_dir: default_cache_dir(),
            prepare: PrepareOptions::default(),
            openml_url: None,
            progress: true,
        }
    }
}

/// `$JETSWEEP_CACHE_DIR`, else the user's cache folder (`~/.cache/jetsweep` on Linux).
pub fn default_cache_dir() -> PathBuf {
    std::env::var_os(CACHE_DIR_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| dirs::cache_dir().map(|d| d.join("jetsweep")))
        .unwrap_or_else(|| PathBuf::from(".jetsweep-cache"))
}

/// Loads and prepares a dataset. Downloads and file sources are prepared once and then read from the
/// cache (`<cache>/prepared/*.jsd`); a corrupt cache entry is an error that names the file.
pub fn load(spec: &DatasetSpec, options: &LoadOptions) -> Result<Prepared> {
    options.prepare.validate()?;
    match spec {
        DatasetSpec::Synthetic { rows } => synthetic::prepared(*rows, &options.prepare),
        DatasetSpec::PreparedFile(path) => already_prepared(cache::load(path)?, options, path),
        DatasetSpec::NpyDir(dir) => already_prepared(npy::import_dir(dir)?, options, dir),
        DatasetSpec::OpenMl => {
            let base = openml::base_url(options.openml_url.as_deref());
            let file = openml::fetch(
                &options.cache_dir.join("downloads"),
                &base,
                options.progress,
            )?;
            let info = SourceInfo {
                source: spec.to_string(),
                synthetic: false,
                source_sha256: Some(file.sha256),
            };
            cached(info, options, || openml::read_arff(&file.path))
        }
        DatasetSpec::Csv(path) => {
            let info = SourceInfo {
                source: format!("csv:{}", path.display()),
                synthetic: false,
                source_sha256: Some(file_sha256(path)?),
            };
            cached(info, options, || csv_source::read(path))
        }
        DatasetSpec::Hdf5(path) => {
            #[cfg(feature = "hdf5")]
            {
                let info = SourceInfo {
                    source: format!("hdf5:{}", path.display()),
                    synthetic: false,
                    source_sha256: Some(file_sha256(path)?),
                };
                cached(info, options, || crate::hdf5_source::read(path))
            }
            #[cfg(not(feature = "hdf5"))]
            Err(DataError::Invalid(format!(
                "{}: reading MASE's HDF5 file needs a build with the `hdf5` feature (apt-get install libhdf5-dev; cargo build --release --features hdf5); or export it to CSV",
                path.display()
            )))
        }
    }
}

/// A source that is already split and scaled cannot be re-split: refuse a validation fraction.
fn already_prepared(prepared: Prepared, options: &LoadOptions, path: &Path) -> Result<Prepared> {
    if options.prepare.val_fraction > 0.0 && prepared.val.is_none() {
        return Err(DataError::Invalid(format!(
            "{} is already prepared (split and scaled) and has no validation split; a validation fraction applies only to raw sources",
            path.display()
        )));
    }
    Ok(prepared)
}

/// Reads the prepared dataset for `info` from the cache, or prepares it with `read` and stores it.
fn cached(
    info: SourceInfo,
    options: &LoadOptions,
    read: impl FnOnce() -> Result<crate::RawTable>,
) -> Result<Prepared> {
    let key = format!(
        "{}|split={}|val={}|v{}",
        info.source_sha256.as_deref().unwrap_or(&info.source),
        options.prepare.split_seed,
        options.prepare.val_fraction,
        cache::FORMAT_VERSION
    );
    let key = &hex(&Sha256::digest(key.as_bytes()))[..16];
    let path = options
        .cache_dir
        .join("prepared")
        .join(format!("{key}.{}", cache::EXTENSION));
    if path.is_file() {
        return cache::load(&path);
    }
    let prepared = prepare(read()?, info, &options.prepare)?;
    cache::save(&prepared, &path)?;
    Ok(prepared)
}

/// sha256 of a file's bytes, streamed.
pub fn file_sha256(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = std::io::Read::read(&mut file, &mut buf).map_err(|e| DataError::io(path, e))?;
        if n == 0 {
            return Ok(hex(&h.finalize()));
        }
        h.update(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_bad_ones_are_named() {
        assert_eq!(
            "synthetic".parse::<DatasetSpec>().unwrap(),
            DatasetSpec::Synthetic {
                rows: synthetic::DEFAULT_ROWS
            }
        );
        assert_eq!(
            "synthetic:5_000".parse::<DatasetSpec>().unwrap(),
            DatasetSpec::Synthetic { rows: 5000 }
        );
        assert_eq!(
            "openml".parse::<DatasetSpec>().unwrap(),
            DatasetSpec::OpenMl
        );
        let err = "imagenet".parse::<DatasetSpec>().unwrap_err().to_string();
        assert!(err.contains("\"imagenet\""), "{err}");
        let err = "synthetic:lots"
            .parse::<DatasetSpec>()
            .unwrap_err()
            .to_string();
        assert!(err.contains("lots"), "{err}");
        let err = "/nonexistent/jets.csv"
            .parse::<DatasetSpec>()
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/jets.csv"), "{err}");
        let err = "synthetic:1000000000"
            .parse::<DatasetSpec>()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("1000000000") && err.contains("at most 1000000"),
            "{err}"
        );
        let long = format!("{}.weird", "x".repeat(100_000));
        let err = long.parse::<DatasetSpec>().unwrap_err().to_string();
        assert!(err.contains("4096") && err.len() < 400, "{err}");
    }

    #[test]
    fn csv_is_prepared_once_then_read_from_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("jets.csv");
        let raw = synthetic::generate(1_000);
        let mut text = format!("{},label\n", crate::FEATURE_NAMES.join(","));
        for i in 0..raw.rows() {
            let cells: Vec<String> = raw.row(i).iter().map(f32::to_string).collect();
            text += &format!(
                "{},{}\n",
                cells.join(","),
                crate::CLASS_NAMES[raw.labels[i] as usize]
            );
        }
        std::fs::write(&csv, text).unwrap();
        let options = LoadOptions {
            cache_dir: dir.path().join("cache"),
            progress: false,
            ..Default::default()
        };
        let spec: DatasetSpec = csv.to_str().unwrap().parse().unwrap();
        let first = load(&spec, &options).unwrap();
        let cached: Vec<_> = std::fs::read_dir(dir.path().join("cache/prepared"))
            .unwrap()
            .collect();
        assert_eq!(cached.len(), 1);
        let second = load(&spec, &options).unwrap();
        assert_eq!(first, second);
        assert_eq!(first.provenance.raw_rows, 1_000);
        assert_eq!(first.train.len(), 800);
        // Same features as generating directly: CSV's decimal text round-trips f32 exactly.
        assert_eq!(
            first.train,
            synthetic::prepared(1_000, &Default::default())
                .unwrap()
                .train
        );
    }
}
