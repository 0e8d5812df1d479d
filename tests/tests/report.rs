//! `jetsweep run --report DIR` and `jetsweep report`: the pages, the figures (SVG and PNG) and
//! results.json are written, results.json is what `jetsweep results --format json` prints, and
//! every number in the report's table is one of its numbers, rounded as the table says.

use jetsweep_coordinator::client::render::words::real;
use std::path::Path;
use std::process::Command;

use jetsweep_coordinator::testkit::sweeps::QUICK;
use jetsweep_tests::cluster::coordinator;
use serde_json::Value;

use crate::support::{coordinator_bin, text};

/// `mean ± std` of a fraction in percent with two decimals, as the report writes accuracy.
fn pct(row: &Value, mean: &str, std: &str) -> String {
    format!(
        "{:.2} ± {:.2}",
        100.0 * row[mean].as_f64().unwrap(),
        100.0 * row[std].as_f64().unwrap()
    )
}

/// `mean ± std` with `digits` decimals.
fn plain(row: &Value, mean: &str, std: &str, digits: usize) -> String {
    format!(
        "{:.digits$} ± {:.digits$}",
        row[mean].as_f64().unwrap(),
        row[std].as_f64().unwrap()
    )
}

/// The cells of the Markdown table's body rows (those starting with a row number).
fn table_rows(markdown: &str) -> Vec<Vec<String>> {
    markdown
        .lines()
        .filter(|l| l.starts_with("| ") && l[2..].starts_with(|c: char| c.is_ascii_digit()))
        .map(|l| {
            l.trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().to_string())
                .collect()
        })
        .take_while(|cells: &Vec<String>| cells.len() == 14)
        .collect()
}

fn jetsweep(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(coordinator_bin())
        .args(args)
        .current_dir(dir)
        .env_remove("JETSWEEP_TOKEN")
        .output()
        .unwrap()
}

#[test]
fn a_report_states_the_numbers_of_results_json_with_its_figures() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("quick.toml"), QUICK).unwrap();
    let out = jetsweep(
        dir.path(),
        &[
            "run",
            "quick.toml",
            "--workers",
            "2",
            "--state",
            "state.db",
            "--report",
            "rep",
        ],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("report written"), "{stderr}");
    let rep = dir.path().join("rep");
    for name in [
        "accuracy-vs-batch_size",
        "accuracy-vs-learning_rate",
        "heatmap",
        "curves-test-accuracy",
        "curves-validation-loss",
        "training-time",
    ] {
        let png = std::fs::read(rep.join(format!("figures/{name}.png"))).unwrap();
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 5_000,
            "{name}.png"
        );
        let svg = std::fs::read_to_string(rep.join(format!("figures/{name}.svg"))).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.contains("</svg>"),
            "{name}.svg"
        );
    }

    // results.json is what `jetsweep results --format json` prints for the sweep.
    let results_json = std::fs::read_to_string(rep.join("results.json")).unwrap();
    let (_coordinator, url) = coordinator(dir.path(), "127.0.0.1:0", "after");
    let listed = jetsweep(dir.path(), &["status", "--coordinator", &url]);
    let sweep_id = text(&listed)
        .0
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string();
    let printed = jetsweep(
        dir.path(),
        &[
            "results",
            &sweep_id,
            "--format",
            "json",
            "--coordinator",
            &url,
        ],
    );
    assert_eq!(text(&printed).0, results_json);

    // Every number of the table is results.json's, rounded; the best is the one it names.
    let doc: Value = serde_json::from_str(&results_json).unwrap();
    let rows = doc["rows"].as_array().unwrap();
    let markdown = std::fs::read_to_string(rep.join("report.md")).unwrap();
    let table = table_rows(&markdown);
    assert_eq!(table.len(), rows.len(), "{markdown}");
    for (i, (cells, row)) in table.iter().zip(rows).enumerate() {
        let expected = [
            (i + 1).to_string(),
            row["model"].as_str().unwrap().to_string(),
            row["batch_size"].to_string(),
            row["max_epochs"].to_string(),
            real(row["learning_rate"].as_f64().unwrap()),
            real(row["weight_decay"].as_f64().unwrap()),
            format!("{}/{}", row["seeds"], row["seeds"]),
            pct(row, "mean_test_acc", "std_test_acc"),
            pct(row, "mean_best_test_acc", "std_best_test_acc"),
            plain(row, "mean_best_val_loss", "std_best_val_loss", 4),
            pct(row, "mean_best_val_acc", "std_best_val_acc"),
            plain(row, "mean_best_epoch", "std_best_epoch", 1),
            plain(row, "mean_train_seconds", "std_train_seconds", 2),
        ];
        assert_eq!(cells[..13], expected, "row {}", i + 1);
        let best = doc["best"].as_u64() == Some(i as u64);
        assert_eq!(cells[13].starts_with("best"), best, "row {}", i + 1);
    }
    assert!(markdown.contains("SYNTHETIC") && markdown.contains(&sweep_id));
    assert!(markdown.contains(
        "![Test accuracy vs batch size (synthetic data)](figures/accuracy-vs-batch_size.png)"
    ));

    // The HTML page holds the same table and its figures inline.
    let html = std::fs::read_to_string(rep.join("report.html")).unwrap();
    assert_eq!(html.matches("<svg").count(), 6);
    for cells in &table {
        assert!(
            html.contains(&format!("<td>{}</td>", cells[7])),
            "{}",
            cells[7]
        );
    }

    // `jetsweep report` on the served sweep writes the same pages (but for when they were made).
    let again = jetsweep(
        dir.path(),
        &["report", &sweep_id, "--out", "rep2", "--coordinator", &url],
    );
    assert!(again.status.success(), "{:?}", text(&again));
    let made = |s: &str| {
        s.lines()
            .filter(|l| !l.contains("Made by"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let markdown2 = std::fs::read_to_string(dir.path().join("rep2/report.md")).unwrap();
    assert_eq!(made(&markdown2), made(&markdown));
}
