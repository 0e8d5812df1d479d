//! The report's two pages, HTML and Markdown, from one set of facts and tables: a header (which
//! sweep, data, models, recipe, jetsweep version), the figures, the table of grid points with the
//! best marked, hints, and the jobs that did not finish. Numbers are those of `results.json`,
//! rounded: accuracy in percent with two decimals, losses with four.

use super::{Inputs, Param, figures::Figure, model_params, spec};
use crate::client::render::words::{self, pct, plain, utc};
use jetsweep_proto::v1 as pb;

/// A table: its header and rows of cells, as text.
struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

/// A piece of a fact: words (others' words among them, escaped by each page) or a command shown
/// as code.
enum Span {
    Words(String),
    Code(String),
}

/// A fact's text, in pieces.
struct FactText(Vec<Span>);

impl From<String> for FactText {
    fn from(words: String) -> Self {
        FactText(vec![Span::Words(words)])
    }
}

impl From<&str> for FactText {
    fn from(words: &str) -> Self {
        FactText(vec![Span::Words(words.to_string())])
    }
}

impl FactText {
    /// The words alone, for judging a fact (a warning?).
    fn words(&self) -> String {
        self.0
            .iter()
            .map(|s| match s {
                Span::Words(w) | Span::Code(w) => w.as_str(),
            })
            .collect()
    }

    fn markdown(&self) -> String {
        self.0
            .iter()
            .map(|s| match s {
                Span::Words(w) => md_cell(w),
                // A code span shows its text as written: only a backtick would end it early.
                Span::Code(c) => format!("`{}`", c.replace('`', "'")),
            })
            .collect()
    }

    fn html(&self) -> String {
        self.0
            .iter()
            .map(|s| match s {
                Span::Words(w) => esc(w),
                Span::Code(c) => format!("<code>{}</code>", esc(c)),
            })
            .collect()
    }
}

/// The facts the header states, as (label, text) pairs.
fn facts(inputs: &Inputs) -> Vec<(&'static str, FactText)> {
    let s = &inputs.sweep;
    let dataset = inputs.results.dataset.clone().unwrap_or_default();
    let unfinished = s.queued + s.leased;
    let state = if unfinished > 0 {
        format!(
            "NOT FINISHED: {} of {} jobs ended ({} done, {} failed, {} cancelled), {} running, {} queued; the numbers will change",
            s.done + s.failed + s.cancelled,
            s.total,
            s.done,
            s.failed,
            s.cancelled,
            s.leased,
            s.queued
        )
    } else {
        format!(
            "ended: {} jobs, {} done, {} failed, {} cancelled",
            s.total, s.done, s.failed, s.cancelled
        )
    };
    let mut models: Vec<String> = inputs
        .results
        .rows
        .iter()
        .map(|r| {
            let m = spec(r).model;
            format!("{m} ({} trainable parameters)", model_params(&m))
        })
        .collect();
    models.sort();
    models.dedup();
    vec![
        ("Sweep", format!("{} ({})", s.name, s.sweep_id).into()),
        ("State", state.into()),
        (
            "Data",
            format!(
                "{}{}; sha256 {}; {} bytes",
                dataset.spec,
                if dataset.synthetic {
                    " — SYNTHETIC jets from jetsweep's generator, not real data"
                } else {
                    ""
                },
                dataset.sha256,
                dataset.size_bytes
            )
            .into(),
        ),
        (
            "Validation",
            match dataset.validation.as_str() {
                "train-as-val" => {
                    "train-as-val: the training split doubles as validation data, as in MASE".into()
                }
                "held-out" => "held-out: a split carved from the training part, never trained on"
                    .into(),
                other => other.into(),
            },
        ),
        ("Models", models.join("; ").into()),
        (
            "Trained model",
            FactText(vec![
                Span::Words("each trial keeps the weights of its best epoch (unless the sweep set keep_models = \"none\"); ".into()),
                Span::Code(format!("jetsweep model {} --out best.onnx", s.sweep_id)),
                Span::Words(" (or best.safetensors, with MASE's layer names) exports the best point's seed with the lowest validation loss, and best.scaling.json the scaler its inputs need".into()),
            ]),
        ),
        (
            "Recipe",
            "MASE's JSC recipe: Adam (β 0.9/0.999, ε 1e-8, weight decay as the sweep sets it, 0 by default); learning rate cosine-annealed per epoch to 1e-6 over the trial's epochs; cross-entropy loss; the best epoch is the one with the lowest validation loss (MASE's best.ckpt), and the best grid point the one with the lowest mean validation loss there — test accuracy never chooses".into(),
        ),
        (
            "Made by",
            format!(
                "jetsweep {}, {}",
                env!("CARGO_PKG_VERSION"),
                utc(inputs.made_unix_ms)
            )
            .into(),
        ),
    ]
}

/// What a point's seeds did: "2/2", or "1/3 (1 failed, 1 to go)".
fn seeds(row: &pb::ResultRow) -> String {
    let total = row.seeds + row.failed + row.cancelled + row.pending;
    let note = words::seed_note(row);
    if note.is_empty() {
        format!("{}/{total}", row.seeds)
    } else {
        format!("{}/{total} ({note})", row.seeds)
    }
}

/// The table of grid points: every hyperparameter, seeds, and the numbers with the best marked.
fn points_table(inputs: &Inputs) -> Table {
    let r = &inputs.results;
    let header = [
        "#",
        "model",
        "batch",
        "epochs",
        "learning rate",
        "weight decay",
        "seeds done",
        "test acc. % (last epoch)",
        "test acc. % (best epoch)",
        "val. loss (best epoch)",
        "val. acc. % (best epoch)",
        "best epoch",
        "training s",
        "",
    ]
    .map(String::from)
    .to_vec();
    let rows = r
        .rows
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let s = spec(row);
            vec![
                (i + 1).to_string(),
                s.model.clone(),
                s.batch_size.to_string(),
                s.max_epochs.to_string(),
                words::real(s.learning_rate),
                words::real(s.weight_decay),
                seeds(row),
                pct(row.mean_test_acc, row.std_test_acc),
                pct(row.mean_best_test_acc, row.std_best_test_acc),
                plain(row.mean_best_val_loss, row.std_best_val_loss, 4),
                pct(row.mean_best_val_acc, row.std_best_val_acc),
                plain(row.mean_best_epoch, row.std_best_epoch, 1),
                plain(row.mean_train_seconds, row.std_train_seconds, 2),
                words::marker(r, i).trim_start_matches("← ").to_string(),
            ]
        })
        .collect();
    Table { header, rows }
}

/// Jobs that failed or were cancelled, with why.
fn unfinished_table(inputs: &Inputs) -> Table {
    let rows = inputs
        .jobs
        .iter()
        .filter(|j| !j.error.is_empty())
        .map(|j| {
            let s = j.spec.clone().unwrap_or_default();
            vec![
                j.job_id.chars().take(16).collect(),
                words::job_state(j).to_string(),
                format!(
                    "{} batch {} epochs {} lr {} wd {} seed {}",
                    s.model,
                    s.batch_size,
                    s.max_epochs,
                    words::real(s.learning_rate),
                    words::real(s.weight_decay),
                    s.seed
                ),
                j.attempts.to_string(),
                j.error.clone(),
            ]
        })
        .collect();
    Table {
        header: ["job", "state", "trial", "attempts", "why"]
            .map(String::from)
            .to_vec(),
        rows,
    }
}

/// Text others wrote (a sweep's name, a dataset path, an error), as literal Markdown, also inside
/// a table cell: HTML is written as entities (Python-Markdown and others pass raw HTML through, so
/// `<script>` in an error text would run), Markdown's marks are escaped (no link or image can be
/// made), and line breaks and other control characters become spaces.
fn md_cell(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\\' | '`' | '*' | '_' | '[' | ']' | '|' | '#' | '!' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn md_table(t: &Table) -> String {
    let mut out = format!(
        "| {} |\n|{}\n",
        t.header
            .iter()
            .map(|h| md_cell(h))
            .collect::<Vec<_>>()
            .join(" | "),
        "---|".repeat(t.header.len())
    );
    for row in &t.rows {
        out += &format!(
            "| {} |\n",
            row.iter()
                .map(|c| md_cell(c))
                .collect::<Vec<_>>()
                .join(" | ")
        );
    }
    out
}

/// Early stopping rung by rung: points judged, how many went on and stopped, the cutoffs; and
/// the trial-epochs trained against every trial to its last epoch. None without early stopping.
fn stopping_section(inputs: &Inputs) -> Option<(String, Table)> {
    let d = &inputs.decisions;
    if d.rule.is_empty() || d.rule == "none" {
        return None;
    }
    let mut rungs: std::collections::BTreeMap<u32, Vec<&pb::Decision>> = Default::default();
    for row in &d.decisions {
        rungs.entry(row.rung).or_default().push(row);
    }
    let rows = rungs
        .iter()
        .map(|(rung, rows)| {
            let count = |actions: &[&str]| {
                rows.iter()
                    .filter(|r| actions.contains(&r.action.as_str()))
                    .count()
                    .to_string()
            };
            let cutoffs: Vec<f64> = rows.iter().filter_map(|r| r.cutoff).collect();
            let cutoff = match (
                cutoffs.iter().copied().reduce(f64::min),
                cutoffs.iter().copied().reduce(f64::max),
            ) {
                (Some(lo), Some(hi)) if (hi - lo).abs() < 5e-5 => format!("{lo:.4}"),
                (Some(lo), Some(hi)) => format!("{lo:.4} – {hi:.4}"),
                _ => "-".to_string(),
            };
            vec![
                rung.to_string(),
                rows.len().to_string(),
                count(&["kept", "promoted", "continued"]),
                count(&["stopped"]),
                count(&["paused"]),
                cutoff,
            ]
        })
        .collect();
    let (spent, full) = crate::client::render::decisions::trial_epochs(&inputs.jobs);
    let intro = format!(
        "{}. A point is judged by the mean over its seeds at the rung's epoch. Trial-epochs trained: {spent} of the {full} that every trial to its last epoch takes ({:.0} %).",
        crate::client::render::decisions::rule_phrase(d),
        100.0 * spent as f64 / full.max(1) as f64
    );
    Some((
        intro,
        Table {
            header: [
                "rung (epoch)",
                "points judged",
                "went on",
                "stopped",
                "paused",
                "cutoff",
            ]
            .map(String::from)
            .to_vec(),
            rows,
        },
    ))
}

/// The Markdown page: figures as the PNG files beside it.
pub fn markdown(inputs: &Inputs, swept: &[&Param], figures: &[Figure]) -> String {
    let mut out = format!("# Sweep report: {}\n\n", md_cell(&inputs.sweep.name));
    for (label, text) in facts(inputs) {
        out += &format!("- **{label}:** {}\n", text.markdown());
    }
    out += &format!(
        "- **Swept:** {}\n\n",
        if swept.is_empty() {
            "nothing but the seed".to_string()
        } else {
            swept.iter().map(|p| p.axis).collect::<Vec<_>>().join(", ")
        }
    );
    if inputs.results.rows.iter().all(|r| r.seeds == 0) {
        out += "**Nothing has finished yet**: there are no numbers to show.\n\n";
    }
    out += "## Grid points\n\nMean ± sample standard deviation over the finished seeds. ";
    out += "\"best\" is the lowest mean validation loss; \"tie\" is within the seeds' spread of it.\n\n";
    out += &md_table(&points_table(inputs));
    for hint in &inputs.results.hints {
        out += &format!("\n> Hint: {}\n", md_cell(hint));
    }
    for f in figures {
        out += &format!(
            "\n## {}\n\n![{}](figures/{}.png)\n\n{}\n",
            f.title, f.title, f.name, f.caption
        );
    }
    if let Some((intro, table)) = stopping_section(inputs) {
        out += &format!("\n## Early stopping\n\n{}\n\n", md_cell(&intro));
        out += &md_table(&table);
    }
    let unfinished = unfinished_table(inputs);
    if !unfinished.rows.is_empty() {
        out += "\n## Jobs that failed or were cancelled\n\n";
        out += &md_table(&unfinished);
    }
    out += "\nEvery number here is in `results.json` beside this page (the output of `jetsweep results --format json`).\n";
    out
}

/// Text safe inside HTML (the report's pages, the dashboard's 404 page).
pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn html_table(t: &Table, class: &str) -> String {
    let mut out = format!("<table class=\"{class}\"><thead><tr>");
    for h in &t.header {
        out += &format!("<th>{}</th>", esc(h));
    }
    out += "</tr></thead><tbody>";
    for row in &t.rows {
        let marked = row.last().is_some_and(|m| m.starts_with("best"));
        out += if marked {
            "<tr class=\"best\">"
        } else {
            "<tr>"
        };
        for cell in row {
            out += &format!("<td>{}</td>", esc(cell));
        }
        out += "</tr>";
    }
    out + "</tbody></table>\n"
}

const STYLE: &str = "body{font-family:'DejaVu Sans',Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}\
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:2em}dl{display:grid;grid-template-columns:max-content 1fr;gap:.3em 1em}\
dt{font-weight:bold}dd{margin:0}table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ccc;padding:.3em .5em;text-align:right}td{white-space:nowrap}\
th{background:#f3f3f3}tr.best td{background:#fff3c4;font-weight:bold}.warn{color:#a40000;font-weight:bold}figure{margin:1.5em 0}\
figure svg{max-width:100%;height:auto}figcaption{font-size:.9em;color:#555}.hint{background:#eef6ff;padding:.5em 1em;border-left:4px solid #1f77b4}";

/// The HTML page: one file, figures inline as SVG.
pub fn html(inputs: &Inputs, swept: &[&Param], figures: &[Figure]) -> String {
    let mut out = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Sweep report: {}</title><style>{STYLE}</style></head><body>\n<h1>Sweep report: {}</h1>\n<dl>",
        esc(&inputs.sweep.name),
        esc(&inputs.sweep.name)
    );
    for (label, text) in facts(inputs) {
        let words = text.words();
        let class = if words.contains("SYNTHETIC") || words.starts_with("NOT FINISHED") {
            " class=\"warn\""
        } else {
            ""
        };
        out += &format!("<dt>{label}</dt><dd{class}>{}</dd>", text.html());
    }
    out += &format!(
        "<dt>Swept</dt><dd>{}</dd></dl>\n",
        if swept.is_empty() {
            "nothing but the seed".to_string()
        } else {
            esc(&swept.iter().map(|p| p.axis).collect::<Vec<_>>().join(", "))
        }
    );
    if inputs.results.rows.iter().all(|r| r.seeds == 0) {
        out += "<p class=\"warn\">Nothing has finished yet: there are no numbers to show.</p>\n";
    }
    out += "<h2>Grid points</h2>\n<p>Mean ± sample standard deviation over the finished seeds. \
            “best” is the lowest mean validation loss; “tie” is within the seeds' spread of it.</p>\n";
    out += &html_table(&points_table(inputs), "points");
    for hint in &inputs.results.hints {
        out += &format!("<p class=\"hint\">Hint: {}</p>\n", esc(hint));
    }
    for f in figures {
        out += &format!(
            "<h2>{}</h2>\n<figure id=\"{}\">{}<figcaption>{}</figcaption></figure>\n",
            esc(&f.title),
            esc(&f.name),
            f.svg,
            esc(&f.caption)
        );
    }
    if let Some((intro, table)) = stopping_section(inputs) {
        out += &format!("<h2>Early stopping</h2>\n<p>{}</p>\n", esc(&intro));
        out += &html_table(&table, "stopping");
    }
    let unfinished = unfinished_table(inputs);
    if !unfinished.rows.is_empty() {
        out += "<h2>Jobs that failed or were cancelled</h2>\n";
        out += &html_table(&unfinished, "jobs");
    }
    out += "<p>Every number here is in <code>results.json</code> beside this page (the output of <code>jetsweep results --format json</code>).</p>\n</body></html>\n";
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn text_others_wrote_stays_literal_in_markdown() {
        let hostile = "x</td><script>alert(1)</script> [a](javascript:b) ![i](http://c/d.png) `code` a|b\nline";
        let cell = super::md_cell(hostile);
        for bad in ["<script", "[a]", "![i]", "\n", "`code`"] {
            assert!(!cell.contains(bad), "{bad} in {cell}");
        }
        assert!(
            cell.contains("&lt;script&gt;") && cell.contains("a\\|b"),
            "{cell}"
        );
    }

    #[test]
    fn our_commands_show_as_code_and_others_words_stay_literal() {
        use super::{FactText, Span};
        let fact = FactText(vec![
            Span::Words("see *this* ".into()),
            Span::Code("jetsweep model a_b-1 --out best.onnx".into()),
        ]);
        assert_eq!(
            fact.markdown(),
            "see \\*this\\* `jetsweep model a_b-1 --out best.onnx`"
        );
        assert_eq!(
            fact.html(),
            "see *this* <code>jetsweep model a_b-1 --out best.onnx</code>"
        );
    }

    #[test]
    fn utc_dates_are_civil_dates() {
        assert_eq!(super::utc(0), "1970-01-01 00:00 UTC");
        // 2026-11-29 15:35:00 UTC.
        assert_eq!(super::utc(1_795_966_500_000), "2026-11-29 15:35 UTC");
        assert_eq!(super::utc(951_782_400_000), "2000-02-29 00:00 UTC");
    }
}
