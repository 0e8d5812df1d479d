//! Helpers for the end-to-end tests: the real binaries, built once, run as child processes.

use std::path::{Path, PathBuf};

pub use jetsweep_tests::bins::{coordinator_bin, worker_bin};
use std::process::{Command, Output};

/// Runs the worker binary with `args` in `dir` (a private cache folder under it), returning its output.
pub fn run_worker_cli(dir: &Path, args: &[&str]) -> Output {
    Command::new(worker_bin())
        .args(args)
        .current_dir(dir)
        .env("JETSWEEP_CACHE_DIR", dir.join("cache"))
        .output()
        .expect("jetsweep-worker starts")
}

/// stdout and stderr as text, for assertions and for failure messages.
pub fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The JSON objects a `--json` run printed, one per line.
pub fn json_lines(output: &Output) -> Vec<serde_json::Value> {
    text(output)
        .0
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect()
}

/// Every file under `dir`, recursively, relative to it.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}
