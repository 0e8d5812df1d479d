//! The binaries under test: jetsweep's own, built by Cargo with the README's command, or taken
//! from a folder named by `JETSWEEP_BIN_DIR`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The workspace root (this crate lives in `<root>/tests`).
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits inside the workspace")
}

/// Builds the workspace's binaries in the release profile and returns the path of `bin`, as Cargo
/// reports it. Binaries of another package are not built for this crate's tests by `cargo test`, so
/// the tests ask Cargo for them — with the README's own build command (`cargo build --release`,
/// the whole workspace), so that its features are the ones already built and this is a no-op after
/// it. (`-p PACKAGE` would resolve features for that package alone and rebuild burn.)
///
/// The variables Cargo sets for a running test (`CARGO_MANIFEST_DIR`, `CARGO_PKG_*`, ...) are
/// removed first: build scripts that watch them (ring's does) would otherwise see a change, and
/// this build and the next plain one would each rebuild half the workspace.
fn build(bin: &str) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let set_for_tests = name == "CARGO_MANIFEST_DIR"
            || name == "CARGO_MANIFEST_PATH"
            || name == "CARGO_CRATE_NAME"
            || name == "CARGO_PRIMARY_PACKAGE"
            || name == "CARGO_TARGET_TMPDIR"
            || name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_BIN_");
        if set_for_tests {
            command.env_remove(&*name);
        }
    }
    let output = command
        .args([
            "build",
            "--release",
            "--message-format=json-render-diagnostics",
        ])
        .current_dir(workspace_root())
        .output()
        .expect("cargo runs");
    assert!(
        output.status.success(),
        "building {bin} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == bin)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| panic!("cargo reported no executable for {bin}"))
}

/// `jetsweep-worker`.
pub fn worker_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| locate("jetsweep-worker"))
}

/// `jetsweep`.
pub fn coordinator_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| locate("jetsweep"))
}

/// `bin` in `$JETSWEEP_BIN_DIR` when that is set (the chaos suite, run from the build folder, sets
/// it to its own), else built by [`build`].
fn locate(bin: &str) -> PathBuf {
    match std::env::var_os(BIN_DIR) {
        Some(dir) => PathBuf::from(dir).join(bin),
        None => build(bin),
    }
}

/// The variable naming a folder of already-built binaries.
pub const BIN_DIR: &str = "JETSWEEP_BIN_DIR";
