//! A sweep's results, or its jobs one per seed, as a table, CSV or the JSON document: what
//! `jetsweep results` and `jetsweep run` print. Accuracy is in percent in tables and a fraction in
//! CSV and JSON, as everywhere in jetsweep.

use clap::ValueEnum;
use jetsweep_proto::v1 as pb;

use super::json;
use super::words::{DecayColumn, job_state, marker, model_params, pct, plain, real, seed_note};

/// How results are printed.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
}

/// A CSV field for a number: empty when not measured.
fn csv_number(x: Option<f64>) -> String {
    x.map(|x| format!("{x}")).unwrap_or_default()
}

/// The data line above a table: which data, whether synthetic, its checksum, what validation is.
pub fn data_line(dataset: &pb::DatasetRef) -> String {
    format!(
        "data: {}{} (sha256 {}; validation: {})",
        dataset.spec,
        if dataset.synthetic {
            " — SYNTHETIC jets, not real data"
        } else {
            ""
        },
        &dataset.sha256[..dataset.sha256.len().min(12)],
        dataset.validation
    )
}

/// Seeds of a point: all of them.
fn seed_total(row: &pb::ResultRow) -> u32 {
    row.seeds + row.failed + row.cancelled + row.pending
}

/// The results in the chosen format.
pub fn render(r: &pb::GetResultsResponse, format: Format) -> String {
    let mut out = String::new();
    match format {
        Format::Json => {
            out += &json::document_text(r, true);
            out += "\n";
        }
        Format::Csv => {
            out += "model,parameters,optimizer,batch_size,max_epochs,learning_rate,weight_decay,seeds,failed,cancelled,pending,\
                    mean_test_acc,std_test_acc,mean_best_test_acc,std_best_test_acc,mean_best_val_loss,std_best_val_loss,\
                    mean_best_val_acc,std_best_val_acc,mean_best_epoch,std_best_epoch,mean_train_seconds,std_train_seconds,best,tie\n";
            for (i, row) in r.rows.iter().enumerate() {
                let s = row.spec.clone().unwrap_or_default();
                let numbers = [
                    row.mean_test_acc,
                    row.std_test_acc,
                    row.mean_best_test_acc,
                    row.std_best_test_acc,
                    row.mean_best_val_loss,
                    row.std_best_val_loss,
                    row.mean_best_val_acc,
                    row.std_best_val_acc,
                    row.mean_best_epoch,
                    row.std_best_epoch,
                    row.mean_train_seconds,
                    row.std_train_seconds,
                ]
                .map(csv_number)
                .join(",");
                out += &format!(
                    "{},{},{},{},{},{},{},{},{},{},{},{numbers},{},{}\n",
                    csv_text(&s.model),
                    model_params(&s.model).map_or_else(String::new, |n| n.to_string()),
                    s.optimizer,
                    s.batch_size,
                    s.max_epochs,
                    s.learning_rate,
                    s.weight_decay,
                    row.seeds,
                    row.failed,
                    row.cancelled,
                    row.pending,
                    i as i32 == r.best,
                    row.tie
                );
            }
        }
        Format::Table => {
            let dataset = r.dataset.clone().unwrap_or_default();
            out += &data_line(&dataset);
            out += "\n";
            if r.rows.iter().all(|row| row.seeds == 0) {
                let pending: u32 = r.rows.iter().map(|row| row.pending).sum();
                out += &format!(
                    "nothing has finished yet: {pending} job(s) queued or running, {} grid point(s) (`jetsweep watch` follows them)\n",
                    r.rows.len()
                );
                if pending > 0 {
                    return out;
                }
            }
            let wd = DecayColumn::of(r.rows.iter().map(|row| row.spec.as_ref()));
            out += &format!(
                "{:<14} {:>7} {:>6} {:>6} {:>8}{} {:>6} {:>16} {:>16} {:>17} {:>12} {:>9}\n",
                "MODEL",
                "PARAMS",
                "BATCH",
                "EPOCHS",
                "LR",
                wd.header(),
                "SEEDS",
                "TEST % (final)",
                "TEST % (best ep)",
                "VAL LOSS (best ep)",
                "BEST EPOCH",
                "TRAIN s"
            );
            for (i, row) in r.rows.iter().enumerate() {
                let s = row.spec.clone().unwrap_or_default();
                let note = seed_note(row);
                let line = format!(
                    "{:<14} {:>7} {:>6} {:>6} {:>8}{} {:>6} {:>16} {:>16} {:>17} {:>12} {:>9}  {}{}{}",
                    s.model,
                    model_params(&s.model).map_or_else(|| "-".into(), |n| n.to_string()),
                    s.batch_size,
                    s.max_epochs,
                    real(s.learning_rate),
                    wd.cell(s.weight_decay),
                    format!("{}/{}", row.seeds, seed_total(row)),
                    pct(row.mean_test_acc, row.std_test_acc),
                    pct(row.mean_best_test_acc, row.std_best_test_acc),
                    plain(row.mean_best_val_loss, row.std_best_val_loss, 4),
                    plain(row.mean_best_epoch, row.std_best_epoch, 1),
                    row.mean_train_seconds.map_or_else(|| "-".into(), seconds),
                    marker(r, i),
                    if note.is_empty() || marker(r, i).is_empty() {
                        ""
                    } else {
                        "  "
                    },
                    note
                );
                out += line.trim_end();
                out += "\n";
            }
            out += "± is the standard deviation over the finished seeds; \"best ep\" is each seed's epoch with the lowest validation loss.\n";
            if r.best >= 0 {
                out += "best: the lowest mean validation loss (MASE's rule: chosen on validation, never on test)";
                if r.rows.iter().filter(|row| row.tie).count() > 1 {
                    out += "; \"tie\": within the seeds' spread of the best, the data cannot tell them apart";
                }
                out += ".\n";
            } else {
                let pending: u32 = r.rows.iter().map(|row| row.pending).sum();
                if pending > 0 {
                    out += &format!(
                        "no best yet: {pending} seed(s) still to run, and a point without all its results could be the best\n"
                    );
                }
            }
            for hint in &r.hints {
                out += &format!("hint: {hint}\n");
            }
        }
    }
    out
}

/// One row per job, in the chosen format.
pub fn render_per_seed(jobs: &[pb::JobView], format: Format) -> String {
    let mut out = String::new();
    match format {
        Format::Json => {
            out += &format!(
                "{}\n",
                serde_json::to_string_pretty(&json::per_seed(jobs)).expect("json")
            );
        }
        Format::Csv => {
            out += "job,model,optimizer,batch_size,max_epochs,learning_rate,weight_decay,seed,state,epochs_done,attempts,params,\
                    test_acc,best_epoch,best_test_acc,best_val_loss,best_val_acc,train_seconds,samples_per_second,\
                    final_train_loss,final_test_loss,error\n";
            for j in jobs {
                let s = j.spec.clone().unwrap_or_default();
                let r = j.result.as_ref();
                let m = j.summary.as_ref();
                let n = |x: Option<f64>| csv_number(x);
                out += &format!(
                    "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
                    j.job_id,
                    csv_text(&s.model),
                    s.optimizer,
                    s.batch_size,
                    s.max_epochs,
                    s.learning_rate,
                    s.weight_decay,
                    s.seed,
                    job_state(j),
                    j.epochs_done,
                    j.attempts,
                    r.map_or(String::new(), |r| r.params.to_string()),
                    n(r.map(|r| r.test_acc)),
                    r.map_or(String::new(), |r| r.best_epoch.to_string()),
                    n(r.map(|r| r.best_test_acc)),
                    n(m.map(|m| m.best_val_loss)),
                    n(m.map(|m| m.best_val_acc)),
                    n(m.map(|m| m.train_seconds)),
                    n(m.map(|m| m.samples_per_second)),
                    n(m.map(|m| m.final_train_loss)),
                    n(m.map(|m| m.final_test_loss)),
                    csv_text(&j.error)
                );
            }
        }
        Format::Table => {
            let wd = DecayColumn::of(jobs.iter().map(|j| j.spec.as_ref()));
            out += &format!(
                "{:<13} {:>6} {:>6} {:>8}{} {:>5} {:<9} {:>7} {:>8} {:>7} {:>8} {:>8} {:>6} {:>10} {:>10} {:>8} {:>8}  ERROR\n",
                "MODEL",
                "BATCH",
                "EPOCHS",
                "LR",
                wd.header(),
                "SEED",
                "STATE",
                "TEST %",
                "BEST EP",
                "BEST %",
                "VAL LOSS",
                "TRAIN L",
                "TEST L",
                "TRAIN s",
                "SAMPLES/s",
                "PARAMS",
                "ATTEMPTS"
            );
            for j in jobs {
                let s = j.spec.clone().unwrap_or_default();
                let r = j.result.as_ref();
                let m = j.summary.as_ref();
                let f = |x: Option<f64>, scale: f64, digits: usize| {
                    x.map_or("-".into(), |x| format!("{:.digits$}", scale * x))
                };
                let line = format!(
                    "{:<13} {:>6} {:>6} {:>8}{} {:>5} {:<9} {:>7} {:>8} {:>7} {:>8} {:>8} {:>6} {:>10} {:>10} {:>8} {:>8}  {}",
                    s.model,
                    s.batch_size,
                    s.max_epochs,
                    real(s.learning_rate),
                    wd.cell(s.weight_decay),
                    s.seed,
                    job_state(j),
                    f(r.map(|r| r.test_acc), 100.0, 2),
                    r.map_or("-".into(), |r| r.best_epoch.to_string()),
                    f(r.map(|r| r.best_test_acc), 100.0, 2),
                    f(m.map(|m| m.best_val_loss), 1.0, 4),
                    f(m.map(|m| m.final_train_loss), 1.0, 4),
                    f(m.map(|m| m.final_test_loss), 1.0, 3),
                    m.map_or_else(|| "-".into(), |m| seconds(m.train_seconds)),
                    f(m.map(|m| m.samples_per_second), 1.0, 0),
                    r.map_or("-".into(), |r| r.params.to_string()),
                    j.attempts,
                    j.error
                );
                out += line.trim_end();
                out += "\n";
            }
        }
    }
    out
}

/// A CSV field for free text: quoted when it holds a comma, quote or line break.
fn csv_text(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Seconds with two significant digits below 10 (a packed jsc-tiny trial's share of its pack is
/// milliseconds), one decimal above.
fn seconds(s: f64) -> String {
    let decimals = if s > 0.0 {
        (1 - s.log10().floor() as i32).clamp(1, 4) as usize
    } else {
        1
    };
    format!("{s:.decimals$}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_keep_two_significant_digits_below_ten() {
        let shown: Vec<String> = [0.0087, 0.3, 5.24, 42.0, 0.0]
            .into_iter()
            .map(seconds)
            .collect();
        assert_eq!(shown, ["0.0087", "0.30", "5.2", "42.0", "0.0"]);
    }

    fn row(batch_size: u32, seeds: u32, failed: u32, pending: u32, acc: f64) -> pb::ResultRow {
        let (mean, std) = if seeds > 0 {
            (Some(acc), Some(0.01))
        } else {
            (None, None)
        };
        pb::ResultRow {
            spec: Some(pb::TrialSpec {
                model: "jsc-tiny".into(),
                batch_size,
                max_epochs: 10,
                learning_rate: 1e-3,
                ..Default::default()
            }),
            seeds,
            failed,
            pending,
            mean_test_acc: mean,
            std_test_acc: std,
            mean_best_test_acc: mean,
            std_best_test_acc: std,
            mean_best_val_loss: (seeds > 0).then_some(1.0 - acc),
            std_best_val_loss: std,
            mean_best_val_acc: mean,
            std_best_val_acc: std,
            mean_best_epoch: (seeds > 0).then_some(9.0),
            std_best_epoch: Some(0.0),
            mean_train_seconds: (seeds > 0).then_some(1.5),
            std_train_seconds: Some(0.0),
            ..Default::default()
        }
    }

    fn response(rows: Vec<pb::ResultRow>, best: i32) -> pb::GetResultsResponse {
        pb::GetResultsResponse {
            total_rows: rows.len() as u32,
            rows,
            best,
            dataset: Some(pb::DatasetRef {
                spec: "synthetic:1000".into(),
                sha256: "ab".repeat(32),
                synthetic: true,
                validation: "train-as-val".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Accuracy in percent; a failed seed is counted, not hidden; a point with nothing finished
    /// shows no number; the best is marked and explained.
    #[test]
    fn the_table_counts_failed_seeds_and_never_shows_a_missing_number_as_zero() {
        let r = response(
            vec![
                row(64, 1, 1, 0, 0.7955),
                row(128, 2, 0, 0, 0.73),
                row(256, 0, 1, 1, 0.0),
            ],
            0,
        );
        let table = render(&r, Format::Table);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].contains("SYNTHETIC"), "{table}");
        assert!(
            lines[2].contains("1/2") && lines[2].contains("79.55 ± 1.00"),
            "{table}"
        );
        assert!(
            lines[2].contains("← best") && lines[2].contains("1 failed"),
            "{table}"
        );
        assert!(
            lines[4].contains("0/2") && lines[4].contains("1 failed, 1 to go"),
            "{table}"
        );
        assert!(!lines[4].contains("0.00"), "no number for no seed: {table}");
        assert!(table.contains("MASE's rule"), "{table}");
        let csv = render(&r, Format::Csv);
        assert!(csv.lines().nth(3).unwrap().contains(",0,1,0,1,,,"), "{csv}");
        let json: serde_json::Value = serde_json::from_str(&render(&r, Format::Json)).unwrap();
        assert_eq!(json["rows"][2]["mean_test_acc"], serde_json::Value::Null);
        assert_eq!(json["rows"][0]["failed"], 1);
        assert_eq!(json["best"], 0);
    }

    /// Each point names its model's size (trainable parameters) in every format; a point with
    /// one finished seed has no spread to show (`± –`, not `± 0.00`).
    #[test]
    fn every_format_names_the_models_size_and_one_seed_shows_no_spread() {
        let mut one = row(64, 1, 0, 0, 0.70);
        one.std_test_acc = None;
        one.std_best_test_acc = None;
        one.std_best_val_loss = None;
        one.std_best_epoch = None;
        let mut big = row(64, 2, 0, 0, 0.74);
        big.spec.as_mut().unwrap().model = "jsc-s".into();
        let r = response(vec![one, big], 1);
        let (tiny, s) = (
            model_params("jsc-tiny").unwrap(),
            model_params("jsc-s").unwrap(),
        );
        assert!(tiny < s, "{tiny} {s}");
        let table = render(&r, Format::Table);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[1].contains("PARAMS"), "{table}");
        assert!(lines[2].contains(&format!(" {tiny} ")), "{table}");
        assert!(lines[3].contains(&format!(" {s} ")), "{table}");
        assert!(lines[2].contains("70.00 ± –"), "{table}");
        assert!(!lines[2].contains("± 0.00"), "{table}");
        assert!(lines[3].contains("74.00 ± 1.00"), "{table}");
        let csv = render(&r, Format::Csv);
        assert!(csv.starts_with("model,parameters,"), "{csv}");
        assert!(
            csv.lines()
                .nth(2)
                .unwrap()
                .starts_with(&format!("jsc-s,{s},")),
            "{csv}"
        );
        let json: serde_json::Value = serde_json::from_str(&render(&r, Format::Json)).unwrap();
        assert_eq!(json["rows"][0]["parameters"], tiny);
        assert_eq!(json["rows"][0]["std_test_acc"], serde_json::Value::Null);
    }

    /// A sweep where nothing has finished says so instead of printing an empty table.
    #[test]
    fn a_sweep_with_nothing_finished_says_so() {
        let table = render(&response(vec![row(64, 0, 0, 3, 0.0)], -1), Format::Table);
        assert!(
            table.contains("nothing has finished yet: 3 job(s) queued or running"),
            "{table}"
        );
        assert!(!table.contains("MODEL"), "{table}");
    }
}
