//! `jetsweep-worker train` and `prepare` as a user runs them: output formats, and bad input refused
//! with a message naming the value, a non-zero exit, and nothing written.

use std::fs;

use crate::support::{files_under, json_lines, run_worker_cli, text};

const SMALL: &str = "synthetic:3000";

#[test]
fn train_json_prints_one_object_per_epoch_and_a_final_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_worker_cli(
        dir.path(),
        &[
            "train",
            "--model",
            "jsc-tiny",
            "--dataset",
            SMALL,
            "--batch-size",
            "128",
            "--max-epochs",
            "3",
            "--lr",
            "1e-3",
            "--seed",
            "0",
            "--json",
        ],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("SYNTHETIC"),
        "the data's provenance is said: {stderr}"
    );
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 4, "{stdout}");
    for (i, epoch) in lines[..3].iter().enumerate() {
        assert_eq!(epoch["epoch"], i + 1);
        for key in [
            "lr",
            "train_loss",
            "train_acc",
            "val_loss",
            "val_acc",
            "test_loss",
            "test_acc",
            "seconds",
        ] {
            assert!(epoch[key].is_number(), "{key} missing in {epoch}");
        }
        assert_eq!(epoch["val"], "train-as-val");
    }
    let last = &lines[3];
    assert_eq!(last["final"], true);
    assert_eq!(last["model"], "jsc-tiny");
    assert_eq!(last["params"], 117);
    assert_eq!(last["test_acc"], lines[2]["test_acc"]);
    assert!(last["best_epoch"].as_u64().unwrap() >= 1);
    assert!(last["best_test_acc"].is_number());
    assert_eq!(last["synthetic"], true);
}

#[test]
fn readable_output_and_same_seed_same_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "train",
        "--dataset",
        SMALL,
        "--max-epochs",
        "2",
        "--lr",
        "1e-3",
        "--model",
        "jsc-toy",
    ];
    let a = run_worker_cli(dir.path(), &args);
    let b = run_worker_cli(dir.path(), &args);
    let (sa, ea) = text(&a);
    assert!(a.status.success(), "{ea}");
    assert!(
        sa.contains("epoch   1/2") && sa.contains("final: test acc"),
        "{sa}"
    );
    // Identical apart from timings.
    let strip = |s: &str| {
        s.lines()
            .map(|l| l.split(" | ").take(3).collect::<Vec<_>>().join(" | "))
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&sa), strip(&text(&b).0));
}

#[test]
fn prepare_exports_npy_that_train_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_worker_cli(
        dir.path(),
        &[
            "prepare",
            "--dataset",
            SMALL,
            "--val-fraction",
            "0.1",
            "--out",
            "npy",
        ],
    );
    assert!(out.status.success(), "{}", text(&out).1);
    let names: Vec<String> = files_under(&dir.path().join("npy"))
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    assert_eq!(
        names,
        [
            "provenance.json",
            "x_test.npy",
            "x_train.npy",
            "x_val.npy",
            "y_test.npy",
            "y_train.npy",
            "y_val.npy"
        ]
    );
    let out = run_worker_cli(
        dir.path(),
        &["train", "--dataset", "npy", "--max-epochs", "1", "--json"],
    );
    assert!(out.status.success(), "{}", text(&out).1);
    let lines = json_lines(&out);
    assert_eq!(lines[0]["val"], "held-out");
    // A prepared .jsd file works the same way.
    let out = run_worker_cli(
        dir.path(),
        &["prepare", "--dataset", SMALL, "--out", "small.jsd"],
    );
    assert!(out.status.success(), "{}", text(&out).1);
    let out = run_worker_cli(
        dir.path(),
        &[
            "train",
            "--dataset",
            "small.jsd",
            "--max-epochs",
            "1",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", text(&out).1);
}

/// Runs `args` expecting failure: non-zero exit, stderr containing every needle, no file written.
fn refused(args: &[&str], needles: &[&str], setup: impl FnOnce(&std::path::Path)) {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let before = files_under(dir.path());
    let out = run_worker_cli(dir.path(), args);
    let (stdout, stderr) = text(&out);
    assert!(
        !out.status.success(),
        "{args:?} should fail:\n{stdout}\n{stderr}"
    );
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "{args:?}: stderr lacks {needle:?}:\n{stderr}"
        );
    }
    assert!(!stderr.contains("panicked"), "{args:?} panicked:\n{stderr}");
    assert_eq!(files_under(dir.path()), before, "{args:?} wrote files");
}

#[test]
fn bad_hyperparameters_are_refused_by_value() {
    let base = ["train", "--dataset", SMALL, "--dump-init", "init.json"];
    let with = |extra: &[&'static str]| -> Vec<&'static str> {
        base.iter().chain(extra).copied().collect()
    };
    refused(
        &with(&["--batch-size", "0"]),
        &["'0'", "--batch-size"],
        |_| {},
    );
    refused(&with(&["--lr", "0"]), &["learning rate 0"], |_| {});
    refused(&with(&["--lr", "-1e-3"]), &["learning rate -1e-3"], |_| {});
    refused(&with(&["--lr", "NaN"]), &["learning rate NaN"], |_| {});
    refused(
        &with(&["--max-epochs", "0"]),
        &["'0'", "--max-epochs"],
        |_| {},
    );
    refused(
        &with(&["--model", "jsc-huge"]),
        &["\"jsc-huge\"", "jsc-tiny"],
        |_| {},
    );
    refused(&with(&["--device", "tpu"]), &["\"tpu\""], |_| {});
}

#[test]
fn cuda_where_there_is_none_is_an_error_not_a_panic() {
    refused(
        &["train", "--dataset", SMALL, "--device", "cuda:0"],
        &["cuda:0"],
        |_| {},
    );
}

#[test]
fn bad_datasets_are_refused_by_name() {
    refused(
        &["train", "--dataset", "imagenet"],
        &["\"imagenet\"", "synthetic"],
        |_| {},
    );
    refused(
        &["train", "--dataset", "missing.csv"],
        &["missing.csv"],
        |_| {},
    );
    refused(
        &["train", "--dataset", "corrupt.jsd"],
        &["corrupt.jsd", "checksum"],
        |dir| {
            let good = crate::support::run_worker_cli(
                dir,
                &["prepare", "--dataset", SMALL, "--out", "corrupt.jsd"],
            );
            assert!(good.status.success());
            let bytes = fs::read(dir.join("corrupt.jsd")).unwrap();
            fs::write(dir.join("corrupt.jsd"), &bytes[..bytes.len() / 2]).unwrap();
            fs::remove_dir_all(dir.join("cache")).ok();
        },
    );
    refused(
        &["train", "--dataset", "jets.csv"],
        &["jets.csv", "\"j_multiplicity\""],
        |dir| {
            let header: Vec<String> = jetsweep_data::FEATURE_NAMES[..15]
                .iter()
                .map(|s| s.to_string())
                .collect();
            fs::write(
                dir.join("jets.csv"),
                format!(
                    "{},label\n{},g\n",
                    header.join(","),
                    vec!["1"; 15].join(",")
                ),
            )
            .unwrap();
        },
    );
}

#[test]
fn a_csv_source_is_prepared_and_cached() {
    let dir = tempfile::tempdir().unwrap();
    let raw = jetsweep_data::synthetic::generate(500);
    let mut csv = format!(
        "{},class\n",
        jetsweep_data::FEATURE_NAMES
            .map(|n| n.trim_start_matches("j_"))
            .join(",")
    );
    for i in 0..raw.rows() {
        let cells: Vec<String> = raw.row(i).iter().map(f32::to_string).collect();
        csv += &format!(
            "{},{}\n",
            cells.join(","),
            ["g", "q", "w", "z", "t"][raw.labels[i] as usize]
        );
    }
    fs::write(dir.path().join("jets.csv"), csv).unwrap();
    let out = run_worker_cli(
        dir.path(),
        &[
            "train",
            "--dataset",
            "jets.csv",
            "--max-epochs",
            "1",
            "--json",
        ],
    );
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("real jets") && stderr.contains("train 400"),
        "{stderr}"
    );
    assert_eq!(files_under(&dir.path().join("cache/prepared")).len(), 1);
}
