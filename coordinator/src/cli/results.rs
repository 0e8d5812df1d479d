//! `jetsweep results SWEEP [--format table|csv|json]`.

use clap::{Args, ValueEnum};
use jetsweep_proto::auth::Channel;
use jetsweep_proto::v1 as pb;
use jetsweep_proto::v1::sweep_service_client::SweepServiceClient;

use super::{Remote, rpc_error};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
}

#[derive(Debug, Args)]
pub struct ResultsArgs {
    pub sweep: String,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    #[command(flatten)]
    pub remote: Remote,
}

pub async fn run(args: ResultsArgs) -> anyhow::Result<()> {
    let mut client = args.remote.connect().await?;
    let results = fetch(&mut client, &args.sweep).await?;
    print!("{}", render(&results, args.format));
    Ok(())
}

/// Every page of a sweep's results, as one response.
pub async fn fetch(
    client: &mut SweepServiceClient<Channel>,
    sweep_id: &str,
) -> anyhow::Result<pb::GetResultsResponse> {
    let mut all = pb::GetResultsResponse::default();
    let mut token = String::new();
    loop {
        let page = client
            .get_results(pb::GetResultsRequest {
                sweep_id: sweep_id.to_string(),
                page_size: 0,
                page_token: token,
            })
            .await
            .map_err(rpc_error)?
            .into_inner();
        all.rows.extend(page.rows);
        (all.best, all.total_rows, all.dataset) = (page.best, page.total_rows, page.dataset);
        if page.next_page_token.is_empty() {
            return Ok(all);
        }
        token = page.next_page_token;
    }
}

/// The results in the chosen format.
pub fn render(r: &pb::GetResultsResponse, format: Format) -> String {
    let dataset = r.dataset.clone().unwrap_or_default();
    let mut out = String::new();
    match format {
        Format::Json => {
            let rows: Vec<serde_json::Value> = r
                .rows
                .iter()
                .map(|row| {
                    let s = row.spec.clone().unwrap_or_default();
                    serde_json::json!({"model": s.model, "optimizer": s.optimizer, "batch_size": s.batch_size, "max_epochs": s.max_epochs,
                        "learning_rate": s.learning_rate, "seeds": row.seeds, "mean_test_acc": row.mean_test_acc, "std_test_acc": row.std_test_acc,
                        "mean_best_test_acc": row.mean_best_test_acc, "std_best_test_acc": row.std_best_test_acc})
                })
                .collect();
            let doc = serde_json::json!({"dataset": dataset.spec, "dataset_sha256": dataset.sha256, "synthetic": dataset.synthetic,
                "validation": dataset.validation, "rows": rows, "best": if r.best >= 0 { serde_json::json!(r.best) } else { serde_json::Value::Null }});
            out += &format!("{}\n", serde_json::to_string_pretty(&doc).expect("json"));
        }
        Format::Csv => {
            out += "model,optimizer,batch_size,max_epochs,learning_rate,seeds,mean_test_acc,std_test_acc,mean_best_test_acc,std_best_test_acc\n";
            for row in &r.rows {
                let s = row.spec.clone().unwrap_or_default();
                out += &format!(
                    "{},{},{},{},{},{},{:.6},{:.6},{:.6},{:.6}\n",
                    s.model,
                    s.optimizer,
                    s.batch_size,
                    s.max_epochs,
                    s.learning_rate,
                    row.seeds,
                    row.mean_test_acc,
                    row.std_test_acc,
                    row.mean_best_test_acc,
                    row.std_best_test_acc
                );
            }
        }
        Format::Table => {
            out += &format!(
                "data: {}{} (validation: {})\n",
                dataset.spec,
                if dataset.synthetic {
                    " — SYNTHETIC jets, not real data"
                } else {
                    ""
                },
                dataset.validation
            );
            out += &format!(
                "{:<14} {:>6} {:>7} {:>8} {:>6} {:>18} {:>18}\n",
                "MODEL", "BATCH", "EPOCHS", "LR", "SEEDS", "TEST ACC (final)", "TEST ACC (best)"
            );
            for (i, row) in r.rows.iter().enumerate() {
                let s = row.spec.clone().unwrap_or_default();
                out += &format!(
                    "{:<14} {:>6} {:>7} {:>8.0e} {:>6} {:>11.2} ± {:<4.2} {:>11.2} ± {:<4.2}{}\n",
                    s.model,
                    s.batch_size,
                    s.max_epochs,
                    s.learning_rate,
                    row.seeds,
                    100.0 * row.mean_test_acc,
                    100.0 * row.std_test_acc,
                    100.0 * row.mean_best_test_acc,
                    100.0 * row.std_best_test_acc,
                    if i as i32 == r.best { "  ← best" } else { "" }
                );
            }
        }
    }
    out
}
