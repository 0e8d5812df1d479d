//! The results as one JSON document, the same wherever they are shown: `jetsweep results --format
//! json`, the dashboard's `/api/sweeps/ID/results`, and the report (which states its numbers from
//! it). Built from the wire form, so a client and the coordinator print the same thing. A number
//! no seed measured is `null`, never 0.

use jetsweep_proto::state::JobStatus;
use jetsweep_proto::v1 as pb;
use serde::Serialize;
use serde_json::{Value, json};

/// A measured number, or `null` for NaN (no seed measured it).
pub fn number(x: f64) -> Value {
    if x.is_finite() { json!(x) } else { Value::Null }
}

/// A measured number, or nothing (`null`) for NaN.
fn measured(x: Option<f64>) -> Option<f64> {
    x.filter(|x| x.is_finite())
}

/// One grid point in the document.
#[derive(Serialize)]
struct PointDoc<'a> {
    model: &'a str,
    /// The model's trainable parameters.
    parameters: Option<usize>,
    optimizer: &'a str,
    batch_size: u32,
    max_epochs: u32,
    learning_rate: f64,
    weight_decay: f64,
    seeds: u32,
    failed: u32,
    cancelled: u32,
    pending: u32,
    mean_test_acc: Option<f64>,
    std_test_acc: Option<f64>,
    mean_best_test_acc: Option<f64>,
    std_best_test_acc: Option<f64>,
    mean_best_val_loss: Option<f64>,
    std_best_val_loss: Option<f64>,
    mean_best_val_acc: Option<f64>,
    std_best_val_acc: Option<f64>,
    mean_best_epoch: Option<f64>,
    std_best_epoch: Option<f64>,
    mean_train_seconds: Option<f64>,
    std_train_seconds: Option<f64>,
    best: bool,
    tie: bool,
}

/// The whole document.
#[derive(Serialize)]
struct ResultsDoc<'a> {
    dataset: &'a str,
    dataset_sha256: &'a str,
    synthetic: bool,
    validation: &'a str,
    best: Option<i32>,
    chosen_on: &'static str,
    hints: &'a [String],
    rows: Vec<PointDoc<'a>>,
}

/// The sweep's results as JSON text: the dataset they were measured on, every grid point with its
/// seeds by state and its numbers, the best point (chosen on validation) and the hints. Serialised
/// straight from typed rows: a 10,000-point document is a few megabytes, made on every dashboard
/// load.
pub fn document_text(r: &pb::GetResultsResponse, pretty: bool) -> String {
    let doc = doc(r);
    if pretty {
        serde_json::to_string_pretty(&doc)
    } else {
        serde_json::to_string(&doc)
    }
    .expect("results serialise")
}

fn doc(r: &pb::GetResultsResponse) -> ResultsDoc<'_> {
    static NO_DATASET: pb::DatasetRef = pb::DatasetRef {
        spec: String::new(),
        sha256: String::new(),
        size_bytes: 0,
        synthetic: false,
        validation: String::new(),
    };
    let dataset = r.dataset.as_ref().unwrap_or(&NO_DATASET);
    ResultsDoc {
        dataset: &dataset.spec,
        dataset_sha256: &dataset.sha256,
        synthetic: dataset.synthetic,
        validation: &dataset.validation,
        best: (r.best >= 0).then_some(r.best),
        chosen_on: "lowest mean validation loss at each seed's best epoch",
        hints: &r.hints,
        rows: r
            .rows
            .iter()
            .enumerate()
            .map(|(i, row)| {
                let s = row.spec.as_ref();
                PointDoc {
                    model: s.map_or("", |s| &s.model),
                    parameters: s.and_then(|s| super::words::model_params(&s.model)),
                    optimizer: s.map_or("", |s| &s.optimizer),
                    batch_size: s.map_or(0, |s| s.batch_size),
                    max_epochs: s.map_or(0, |s| s.max_epochs),
                    learning_rate: s.map_or(0.0, |s| s.learning_rate),
                    weight_decay: s.map_or(0.0, |s| s.weight_decay),
                    seeds: row.seeds,
                    failed: row.failed,
                    cancelled: row.cancelled,
                    pending: row.pending,
                    mean_test_acc: measured(row.mean_test_acc),
                    std_test_acc: measured(row.std_test_acc),
                    mean_best_test_acc: measured(row.mean_best_test_acc),
                    std_best_test_acc: measured(row.std_best_test_acc),
                    mean_best_val_loss: measured(row.mean_best_val_loss),
                    std_best_val_loss: measured(row.std_best_val_loss),
                    mean_best_val_acc: measured(row.mean_best_val_acc),
                    std_best_val_acc: measured(row.std_best_val_acc),
                    mean_best_epoch: measured(row.mean_best_epoch),
                    std_best_epoch: measured(row.std_best_epoch),
                    mean_train_seconds: measured(row.mean_train_seconds),
                    std_train_seconds: measured(row.std_train_seconds),
                    best: i as i32 == r.best,
                    tie: row.tie,
                }
            })
            .collect(),
    }
}

/// One row per job: its hyperparameters with the seed, its state, and what it measured (final and
/// best-epoch numbers, time, losses; `null` where it has none).
pub fn per_seed(jobs: &[pb::JobView]) -> Value {
    let rows: Vec<Value> = jobs
        .iter()
        .map(|j| {
            let s = j.spec.clone().unwrap_or_default();
            let state = pb::JobState::try_from(j.state)
                .ok()
                .and_then(|s| JobStatus::try_from(s).ok())
                .map_or("unknown", JobStatus::shown);
            let result = j.result.as_ref();
            let summary = j.summary.as_ref();
            let opt = |x: Option<f64>| x.map_or(Value::Null, number);
            json!({
                "job": j.job_id, "model": s.model, "optimizer": s.optimizer, "batch_size": s.batch_size,
                "max_epochs": s.max_epochs, "learning_rate": s.learning_rate, "weight_decay": s.weight_decay, "seed": s.seed,
                "state": state, "epochs_done": j.epochs_done, "attempts": j.attempts,
                "params": result.map(|r| r.params),
                "test_acc": opt(result.map(|r| r.test_acc)),
                "best_epoch": result.map(|r| r.best_epoch),
                "best_test_acc": opt(result.map(|r| r.best_test_acc)),
                "best_val_loss": opt(summary.map(|s| s.best_val_loss)),
                "best_val_acc": opt(summary.map(|s| s.best_val_acc)),
                "train_seconds": opt(summary.map(|s| s.train_seconds)),
                "samples_per_second": opt(summary.map(|s| s.samples_per_second)),
                "final_train_loss": opt(summary.map(|s| s.final_train_loss)),
                "final_test_loss": opt(summary.map(|s| s.final_test_loss)),
                "error": if j.error.is_empty() { Value::Null } else { json!(j.error) },
            })
        })
        .collect();
    Value::Array(rows)
}
