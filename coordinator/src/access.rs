//! Which dataset files a submitted sweep may make the coordinator read. A sweep file comes from
//! a client; the files are on the coordinator's machine. So a coordinator serving others reads
//! only under its `--data-root` (and the built-in sources: the synthetic generator and the OpenML
//! download), and a path outside it is refused before anything is looked at there: a refusal says
//! nothing about what exists on the machine. `jetsweep run`, where the submitter is the local
//! user, reads any path that user can.

use std::path::{Component, Path, PathBuf};

use crate::{DatasetProblem, Error};

/// The files a sweep may name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataAccess {
    /// Any path this process can read, a relative one from the current folder.
    Local,
    /// Any path this process can read, a relative one from this folder: `jetsweep run FILE`
    /// reads the sweep file's dataset from the file's folder, wherever it is run from.
    LocalFrom(PathBuf),
    /// Paths under this folder (canonical); relative paths are relative to it.
    Under(PathBuf),
    /// No files: only the built-in sources (a coordinator started without `--data-root`).
    BuiltInOnly,
}

/// How much of a refused reference an error quotes.
const SHOWN_CHARS: usize = 200;

fn forbidden(message: String) -> Error {
    Error::Dataset {
        problem: DatasetProblem::Forbidden,
        message,
    }
}

/// The synthetic generator and the OpenML download, by their exact names: no file of the
/// coordinator's is named. (`openml:../x.csv` is not one: anything else is a path, checked.)
fn built_in(raw: &str) -> bool {
    let raw = raw.trim();
    raw == "synthetic"
        || raw
            .strip_prefix("synthetic:")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        || raw == "openml"
        || raw == format!("openml:{}", jetsweep_data::openml::DATASET_ID)
}

impl DataAccess {
    /// Access under `root`, which must be an existing folder.
    pub fn under(root: &Path) -> Result<DataAccess, Error> {
        let root = root.canonicalize().map_err(|e| Error::Open {
            path: root.to_path_buf(),
            reason: format!("the data root: {e}"),
        })?;
        Ok(DataAccess::Under(root))
    }

    /// The dataset reference `raw` as the coordinator may read it: built-in names as they are, a
    /// path resolved under the root if it lies there. Errors: PERMISSION_DENIED naming the rule.
    pub fn resolve(&self, raw: &str) -> Result<String, Error> {
        if built_in(raw) {
            return Ok(raw.to_string());
        }
        let shown: String = raw.trim().chars().take(SHOWN_CHARS).collect();
        match self {
            DataAccess::Local => Ok(raw.to_string()),
            DataAccess::LocalFrom(base) => {
                let path = Path::new(raw.trim());
                Ok(if path.is_relative() {
                    base.join(path).display().to_string()
                } else {
                    raw.to_string()
                })
            }
            DataAccess::BuiltInOnly => Err(forbidden(format!(
                "{shown:?} is not synthetic or openml, and this coordinator reads no dataset files (it was started without --data-root): use a built-in source, or start it with --data-root DIR and put the file there"
            ))),
            DataAccess::Under(root) => {
                let outside = || {
                    forbidden(format!(
                        "{shown:?}: this coordinator reads dataset files only under its data root {}; give a path inside it (relative paths are relative to it)",
                        root.display()
                    ))
                };
                let path = Path::new(raw.trim());
                if path.components().any(|c| matches!(c, Component::ParentDir)) {
                    return Err(outside());
                }
                let path = root.join(path);
                if !path.starts_with(root) {
                    return Err(outside());
                }
                // A link inside the root may point outside it: what it resolves to must lie under
                // the root too. (A path that does not exist is left to the dataset's own error.)
                if let Ok(real) = path.canonicalize() {
                    if !real.starts_with(root) {
                        return Err(outside());
                    }
                    // A folder of .npy files is read file by file: each must lie under the root
                    // too (a link inside it could point anywhere).
                    if real.is_dir() {
                        let entries = std::fs::read_dir(&real).map_err(|_| outside())?;
                        for entry in entries.flatten() {
                            if let Ok(file) = entry.path().canonicalize()
                                && !file.starts_with(root)
                            {
                                return Err(outside());
                            }
                        }
                    }
                }
                Ok(path.display().to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_outside_the_root_are_refused_without_being_looked_at() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(root.join("jets.csv"), "x").unwrap();
        std::fs::write(dir.path().join("secret.csv"), "x").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret.csv"), root.join("link.csv")).unwrap();
        // A folder of .npy files under the root, one of them a link to a file outside it.
        std::fs::create_dir(root.join("npy")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret.csv"), root.join("npy/x_train.npy"))
            .unwrap();
        let access = DataAccess::under(&root).unwrap();
        let real_root = root.canonicalize().unwrap();
        assert_eq!(
            access.resolve("jets.csv").unwrap(),
            real_root.join("jets.csv").display().to_string()
        );
        assert_eq!(access.resolve("synthetic:5000").unwrap(), "synthetic:5000");
        assert_eq!(access.resolve("openml:42468").unwrap(), "openml:42468");
        // Only the exact built-in names skip the root: anything else is a path under it.
        for name in ["openml:../secret.csv", "synthetic:../secret.csv"] {
            let resolved = access.resolve(name).unwrap();
            assert!(
                resolved.starts_with(&real_root.display().to_string()),
                "{name}: {resolved}"
            );
        }
        for outside in [
            "../secret.csv".to_string(),
            "link.csv".to_string(),
            "npy".to_string(),
            dir.path().join("secret.csv").display().to_string(),
            "/etc/passwd".to_string(),
        ] {
            let err = access.resolve(&outside).unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::Dataset {
                        problem: DatasetProblem::Forbidden,
                        ..
                    }
                ),
                "{outside}: {err}"
            );
            assert!(err.to_string().contains("data root"), "{err}");
        }
        let err = DataAccess::BuiltInOnly
            .resolve("/etc/passwd")
            .unwrap_err()
            .to_string();
        assert!(err.contains("--data-root"), "{err}");
        assert_eq!(DataAccess::Local.resolve("/x/y.csv").unwrap(), "/x/y.csv");
        let from = DataAccess::LocalFrom("/lab/sweeps".into());
        assert_eq!(
            from.resolve("data/j.csv").unwrap(),
            "/lab/sweeps/data/j.csv"
        );
        assert_eq!(from.resolve("/x/y.csv").unwrap(), "/x/y.csv");
        assert_eq!(from.resolve("synthetic:100").unwrap(), "synthetic:100");
    }
}
