//! Kept models, exported and checked from outside: a real sweep's best model written by
//! `jetsweep model`, evaluated by `jetsweep-worker eval` and by a numpy script, each equal to the
//! accuracy the sweep recorded for that trial's best epoch; and the clear errors of a bad export.

use std::process::Command;
use std::time::Duration;

use jetsweep_tests::bins::{coordinator_bin, worker_bin};
use jetsweep_tests::cluster::*;
use jetsweep_tests::need;

const SWEEP: &str = "name = \"kept\"\ndataset = \"synthetic:20000\"\nval_fraction = 0.2\nkeep_models = \"best-and-last\"\n[defaults]\nmax_epochs = 4\nbatch_size = 256\n[grid]\nlearning_rate = [1e-3, 1e-2]\nseed = [0, 1]\n";

/// Runs `jetsweep ARGS --coordinator URL`: success, stdout, stderr.
fn jetsweep(url: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(coordinator_bin())
        .args(args)
        .args(["--coordinator", url])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The first number after `after` in `text`.
fn number_after(text: &str, after: &str) -> f64 {
    let at = text
        .find(after)
        .unwrap_or_else(|| panic!("{after:?} not in {text}"))
        + after.len();
    text[at..]
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .find(|s| !s.is_empty())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no number after {after:?} in {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_best_model_exported_evaluates_as_the_sweep_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let (_coordinator, url) = coordinator(dir.path(), "127.0.0.1:0", "models");
    let id = submit(&url, SWEEP).await.sweep_id;
    let _worker = worker_with(dir.path(), &url, "w", &["--pack", "4"]);
    wait_for(&url, &id, Duration::from_secs(120), "done", |s, _| {
        s.done == 4
    })
    .await;

    let file = dir.path().join("best.safetensors");
    let (ok, said, err) = jetsweep(&url, &["model", &id, "--out", file.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(dir.path().join("best.scaling.json").is_file(), "{said}");
    // The job it chose, and what the sweep recorded for its best epoch.
    let job_id = said
        .split("(job ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or_else(|| panic!("no job in {said}"))
        .to_string();
    let job = jobs(&url, &id)
        .await
        .into_iter()
        .find(|j| j.job_id == job_id)
        .expect("the exported job is the sweep's");
    let recorded = job.result.expect("a result").best_test_acc;
    assert!(
        (number_after(&said, "test accuracy") - recorded).abs() < 5e-5,
        "{said}"
    );

    // jetsweep-worker eval, from the file alone.
    let out = Command::new(worker_bin())
        .args(["eval", "--model-file", file.to_str().unwrap()])
        .args(["--dataset", "synthetic:20000", "--val-fraction", "0.2"])
        .env("JETSWEEP_CACHE_DIR", dir.path().join("eval-cache"))
        .output()
        .unwrap();
    let evaluated = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        format!("{:.4}", number_after(&evaluated, "test accuracy")),
        format!("{recorded:.4}"),
        "{evaluated}"
    );

    // The last epoch's weights were kept too (keep_models = "best-and-last").
    let last = dir.path().join("last.safetensors");
    let (ok, said, err) = jetsweep(
        &url,
        &[
            "model",
            &id,
            "--job",
            &job_id,
            "--last",
            "--out",
            last.to_str().unwrap(),
        ],
    );
    assert!(ok && said.contains("after epoch 4"), "{said}{err}");

    // The same model as ONNX.
    let onnx = dir.path().join("best.onnx");
    let (ok, said, err) = jetsweep(&url, &["model", &id, "--out", onnx.to_str().unwrap()]);
    assert!(ok && said.contains(&job_id), "{said}{err}");

    // Outside jetsweep (the script in the repo): the safetensors file with numpy, the ONNX file
    // through onnx.checker and onnxruntime, where a Python with them is found.
    if let Some(python) = need::or_skip(
        "the numpy and onnxruntime checks of an exported model",
        need::python_with(&["numpy", "safetensors", "onnx", "onnxruntime"]),
    ) {
        let data = dir.path().join("data");
        let prepared = Command::new(worker_bin())
            .args([
                "prepare",
                "--dataset",
                "synthetic:20000",
                "--val-fraction",
                "0.2",
                "--out",
            ])
            .arg(&data)
            .env("JETSWEEP_CACHE_DIR", dir.path().join("eval-cache"))
            .output()
            .unwrap();
        assert!(prepared.status.success());
        let script =
            jetsweep_tests::bins::workspace_root().join("coordinator/scripts/check_export.py");
        for (model_file, by) in [(&file, "numpy"), (&onnx, "onnxruntime")] {
            let out = Command::new(&python)
                .arg(&script)
                .arg(model_file)
                .arg(&data)
                .output()
                .unwrap();
            let said = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(
                out.status.success(),
                "{said}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(
                format!("{:.4}", number_after(&said, &format!("{by} test accuracy"))),
                format!("{recorded:.4}")
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_export_is_a_clear_error_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (_coordinator, url) = coordinator(dir.path(), "127.0.0.1:0", "models-bad");
    let none = submit(
        &url,
        &SWEEP
            .replace("best-and-last", "none")
            .replace("kept", "kept-none"),
    )
    .await
    .sweep_id;
    let unfinished = submit(
        &url,
        &SWEEP
            .replace("kept", "kept-later")
            .replace("max_epochs = 4", "max_epochs = 5"),
    )
    .await
    .sweep_id;
    let _worker = worker_with(dir.path(), &url, "w", &["--pack", "4"]);
    wait_for(&url, &none, Duration::from_secs(120), "done", |s, _| {
        s.done == 4
    })
    .await;
    let out = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "model".into(),
                none.clone(),
                "--out".into(),
                out("missing/x.safetensors"),
            ],
            "does not exist",
        ),
        (
            vec!["model".into(), none.clone(), "--out".into(), out("x.onnx2")],
            "no format",
        ),
        (
            vec![
                "model".into(),
                none.clone(),
                "--out".into(),
                out("x.safetensors"),
            ],
            "kept none",
        ),
        (
            vec![
                "model".into(),
                "no-such-sweep".into(),
                "--out".into(),
                out("x.safetensors"),
            ],
            "no-such-sweep",
        ),
        (
            vec![
                "model".into(),
                none.clone(),
                "--job".into(),
                "f00d".into(),
                "--out".into(),
                out("x.safetensors"),
            ],
            "job f00d",
        ),
        (
            vec![
                "model".into(),
                none.clone(),
                "--point".into(),
                "9".into(),
                "--seed".into(),
                "0".into(),
                "--out".into(),
                out("x.safetensors"),
            ],
            "points 1 to 2",
        ),
    ];
    for (args, needle) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, said, err) = jetsweep(&url, &args);
        assert!(
            !ok && err.contains(needle),
            "{args:?}: {said}{err} (wanted {needle:?})"
        );
    }
    // The sweep still running has no best model yet, or a finished point's only.
    let (ok, _, err) = jetsweep(
        &url,
        &[
            "model",
            &unfinished,
            "--job",
            "nope",
            "--out",
            &out("y.safetensors"),
        ],
    );
    assert!(!ok && err.contains("nope"), "{err}");
    let written: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("safetensors") || n.contains("scaling") || n.contains("onnx"))
        .collect();
    assert!(written.is_empty(), "{written:?}");
}

/// Two sweeps sharing one cell (learning rate 1e-3, seed 0): the second reuses the first's job.
/// The first has 24 trials of 10 epochs: enough reports and models to free whole pages.
const FIRST: &str = "name = \"first\"\ndataset = \"synthetic:20000\"\nval_fraction = 0.2\n[defaults]\nmax_epochs = 10\nbatch_size = 256\n[grid]\nlearning_rate = [1e-3, 3e-3, 1e-2]\nseed = [0, 1, 2, 3, 4, 5, 6, 7]\n";
const SECOND: &str = "name = \"second\"\ndataset = \"synthetic:20000\"\nval_fraction = 0.2\n[defaults]\nmax_epochs = 10\nbatch_size = 256\nseed = 0\n[grid]\nlearning_rate = [1e-3, 3e-2]\n";

/// The bytes of the state file's pages in use (SQLite keeps freed pages for reuse).
fn used_bytes(dir: &std::path::Path) -> i64 {
    let db = rusqlite::Connection::open_with_flags(
        dir.join("state.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    db.query_row(
        "SELECT (p.page_count - f.freelist_count) * s.page_size FROM pragma_page_count p, pragma_freelist_count f, pragma_page_size s",
        [],
        |r| r.get(0),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_sweep_frees_its_space_and_keeps_what_another_sweep_shares() {
    let dir = tempfile::tempdir().unwrap();
    let (_coordinator, url) = coordinator(dir.path(), "127.0.0.1:0", "delete");
    let first = submit(&url, FIRST).await.sweep_id;
    let _worker = worker(dir.path(), &url, "w");
    wait_for(&url, &first, Duration::from_secs(120), "done", |s, _| {
        s.done == 24
    })
    .await;
    let second = submit(&url, SECOND).await;
    assert_eq!(second.reused, 1, "the shared cell is reused");
    let second = second.sweep_id;
    wait_for(&url, &second, Duration::from_secs(120), "done", |s, _| {
        s.done == 2
    })
    .await;
    let before = used_bytes(dir.path());
    let (ok, said, err) = jetsweep(&url, &["delete", &first]);
    assert!(ok, "{err}");
    assert!(
        said.contains("deleted 23 jobs") && said.contains("1 jobs kept: other sweeps hold them"),
        "{said}"
    );
    let after = used_bytes(dir.path());
    assert!(
        after < before,
        "{before} bytes in use before, {after} after"
    );
    // The first sweep is gone; the second keeps both its results and both its models.
    let (ok, _, err) = jetsweep(&url, &["status", &first]);
    assert!(!ok && err.contains("not found"), "{err}");
    let (ok, table, err) = jetsweep(&url, &["results", &second]);
    assert!(ok, "{err}");
    assert!(table.contains("1/1"), "{table}");
    assert_eq!(table.matches("1/1").count(), 2, "{table}");
    for point in ["1", "2"] {
        let out = dir.path().join(format!("p{point}.safetensors"));
        let (ok, _, err) = jetsweep(
            &url,
            &[
                "model",
                &second,
                "--point",
                point,
                "--seed",
                "0",
                "--out",
                out.to_str().unwrap(),
            ],
        );
        assert!(ok, "point {point}: {err}");
    }
    // An unknown sweep is a clear error (a running one is refused: jobs/tests/delete.rs).
    let (ok, _, err) = jetsweep(&url, &["delete", "nope-1"]);
    assert!(!ok && err.contains("nope-1"), "{err}");
}
