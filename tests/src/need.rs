//! What a test needs beyond Rust (Chromium, root, `ip`, network namespaces): on a machine without
//! it the test says in one line what it skipped and why, and passes, so `cargo test --release`
//! passes on a fresh machine with only Rust. With `JETSWEEP_TEST_REQUIRE_ALL=1` (set by `.ci/run`,
//! which installs everything first) a missing need fails the test instead: CI never skips.

/// The variable that turns a skip into a failure.
pub const REQUIRE_ALL: &str = "JETSWEEP_TEST_REQUIRE_ALL";

/// Whether every need must be met (CI).
pub fn require_all() -> bool {
    std::env::var(REQUIRE_ALL).is_ok_and(|v| v == "1")
}

/// `found`'s value, or — when it is an error saying what is missing — `None` after printing
/// "skipped TEST: WHY" (panicking instead under [`REQUIRE_ALL`]).
pub fn or_skip<T>(test: &str, found: Result<T, String>) -> Option<T> {
    match found {
        Ok(value) => Some(value),
        Err(why) if require_all() => panic!("{test} needs {why} ({REQUIRE_ALL}=1)"),
        Err(why) => {
            // Straight to the stream, not through eprintln!, which the test harness captures and
            // shows only for a failing test: a skip must be seen.
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "skipped {test}: it needs {why}");
            None
        }
    }
}

/// The name of a Chromium binary that runs here.
pub fn chromium() -> Result<&'static str, String> {
    ["chromium", "chromium-browser"]
        .into_iter()
        .find(|b| {
            std::process::Command::new(b)
                .arg("--version")
                .output()
                .is_ok()
        })
        .ok_or_else(|| "Chromium (apt-get install chromium)".to_string())
}

/// A Python that imports `modules`: `$JETSWEEP_PYTHON` (`.ci/run` points it at a venv it makes),
/// else `python3`.
pub fn python_with(modules: &[&str]) -> Result<String, String> {
    let python = std::env::var("JETSWEEP_PYTHON").unwrap_or_else(|_| "python3".into());
    let imports = modules.join(", ");
    let ok = std::process::Command::new(&python)
        .args(["-c", &format!("import {imports}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        Ok(python)
    } else {
        Err(format!(
            "a Python with {imports} (pip install {}; or set JETSWEEP_PYTHON)",
            modules.join(" ")
        ))
    }
}

/// `bin` (`promtool`, `prometheus`: Debian's `prometheus` package), if it runs here.
pub fn prometheus_tool(bin: &'static str) -> Result<&'static str, String> {
    std::process::Command::new(bin)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
        .then_some(bin)
        .ok_or_else(|| format!("{bin} (apt-get install prometheus)"))
}
