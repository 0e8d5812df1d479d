//! A sweep's early stopping in words: each rung's tally, then one line per point with the last
//! rung it was judged at and why it went on or stopped (`jetsweep status ID`, the report).

use std::collections::BTreeMap;

use jetsweep_proto::v1 as pb;

use super::words::{DecayColumn, real};

/// The rule in one phrase: "sync successive halving on val_loss, eta 3".
pub fn rule_phrase(d: &pb::ListDecisionsResponse) -> String {
    match d.rule.as_str() {
        "halving" => format!(
            "{} successive halving on the seed mean of {}, eta {}",
            d.mode, d.metric, d.eta
        ),
        "median" => format!("the median rule on the seed mean of {}", d.metric),
        other => other.to_string(),
    }
}

/// A score as `mean ± std` with four decimals, `NaN` for a diverged seed.
fn score(mean: Option<f64>, std: Option<f64>) -> String {
    match mean {
        Some(m) => format!("{m:.4} ± {:.4}", std.unwrap_or(0.0)),
        None => "NaN".to_string(),
    }
}

/// Trial-epochs trained, and what every trial to its last epoch takes.
pub fn trial_epochs(jobs: &[pb::JobView]) -> (u64, u64) {
    let spent = jobs.iter().map(|j| u64::from(j.epochs_done)).sum();
    let full = jobs
        .iter()
        .map(|j| u64::from(j.spec.as_ref().map_or(0, |s| s.max_epochs)))
        .sum();
    (spent, full)
}

/// Why a point went on or stopped at its rung.
fn why(d: &pb::ListDecisionsResponse, row: &pb::Decision) -> String {
    let cutoff = row.cutoff.map_or("-".to_string(), |c| format!("{c:.4}"));
    let epoch = row.rung;
    match (d.rule.as_str(), row.action.as_str()) {
        ("median", "stopped") => {
            format!(
                "stopped at epoch {epoch}: worse than the median {cutoff} of the {} others",
                row.among - 1
            )
        }
        ("median", _) => match row.cutoff {
            Some(_) => format!("went on past epoch {epoch}: no worse than the median {cutoff}"),
            None => format!("went on past epoch {epoch}: too few others to judge by"),
        },
        (_, "kept") => format!(
            "kept at epoch {epoch}: in the top {} of {} (cutoff {cutoff})",
            row.among.div_ceil(d.eta.max(2)),
            row.among
        ),
        (_, "promoted") => {
            format!(
                "promoted at epoch {epoch}: in the top 1/{} of {} (cutoff {cutoff})",
                d.eta, row.among
            )
        }
        (_, "paused") => format!(
            "paused at epoch {epoch}: waiting to rank in the top 1/{}",
            d.eta
        ),
        (_, "stopped") if d.mode == "sync" => {
            format!(
                "stopped at epoch {epoch}: worse than the cutoff {cutoff} of the {} judged",
                row.among
            )
        }
        (_, "stopped") => format!(
            "stopped at epoch {epoch}: not in the top 1/{} of the {} that reached it",
            d.eta, row.among
        ),
        (_, other) => format!("{other} at epoch {epoch}"),
    }
}

/// The lines `jetsweep status ID` prints about early stopping (none for a sweep without it).
pub fn decision_lines(d: &pb::ListDecisionsResponse) -> Vec<String> {
    if d.rule.is_empty() || d.rule == "none" {
        return Vec::new();
    }
    let mut lines = vec![format!("early stopping: {}", rule_phrase(d))];
    if d.decisions.is_empty() {
        lines.push("  no point has reached a rung yet".to_string());
        return lines;
    }
    // Each rung's tally, by action.
    let mut rungs: BTreeMap<u32, BTreeMap<&str, u32>> = BTreeMap::new();
    for row in &d.decisions {
        *rungs
            .entry(row.rung)
            .or_default()
            .entry(row.action.as_str())
            .or_default() += 1;
    }
    for (rung, actions) in &rungs {
        let judged: u32 = actions.values().sum();
        let tally: Vec<String> = actions.iter().map(|(a, n)| format!("{n} {a}")).collect();
        lines.push(format!(
            "  rung {rung}: {judged} points judged: {}",
            tally.join(", ")
        ));
    }
    // Each point's last judgement.
    let mut last: BTreeMap<u32, &pb::Decision> = BTreeMap::new();
    for row in &d.decisions {
        let kept = last.entry(row.point).or_insert(row);
        if row.rung >= kept.rung {
            *kept = row;
        }
    }
    let decay = DecayColumn::of(last.values().map(|r| r.spec.as_ref()));
    lines.push(format!(
        "  {:>5} {:<13} {:>6} {:>8}{} {:>5} {:>17}  DECISION",
        "POINT",
        "MODEL",
        "BATCH",
        "LR",
        decay.header(),
        "RUNG",
        d.metric.to_uppercase()
    ));
    for row in last.values() {
        let spec = row.spec.clone().unwrap_or_default();
        lines.push(format!(
            "  {:>5} {:<13} {:>6} {:>8}{} {:>5} {:>17}  {}",
            row.point,
            spec.model,
            spec.batch_size,
            real(spec.learning_rate),
            decay.cell(spec.weight_decay),
            row.rung,
            score(row.mean, row.std),
            why(d, row)
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(
        rung: u32,
        point: u32,
        mean: f64,
        action: &str,
        cutoff: Option<f64>,
        among: u32,
    ) -> pb::Decision {
        pb::Decision {
            rung,
            point,
            mean: Some(mean),
            std: Some(0.01),
            seeds: 2,
            action: action.to_string(),
            cutoff,
            among,
            spec: Some(pb::TrialSpec {
                model: "jsc-tiny".into(),
                batch_size: 64,
                learning_rate: 1e-3 * f64::from(point + 1),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn each_point_reads_its_last_rung_and_why() {
        let d = pb::ListDecisionsResponse {
            rule: "halving".into(),
            mode: "sync".into(),
            metric: "val_loss".into(),
            eta: 3,
            decisions: vec![
                row(1, 0, 0.5, "stopped", Some(0.4), 3),
                row(1, 1, 0.3, "kept", Some(0.4), 3),
                row(1, 2, 0.4, "stopped", Some(0.3), 3),
                row(3, 1, 0.2, "kept", Some(0.2), 1),
            ],
            ..Default::default()
        };
        let lines = decision_lines(&d);
        assert_eq!(
            lines[0],
            "early stopping: sync successive halving on the seed mean of val_loss, eta 3"
        );
        assert_eq!(lines[1], "  rung 1: 3 points judged: 1 kept, 2 stopped");
        assert_eq!(lines[2], "  rung 3: 1 points judged: 1 kept");
        assert!(
            lines[4].contains("0.5000 ± 0.0100")
                && lines[4]
                    .contains("stopped at epoch 1: worse than the cutoff 0.4000 of the 3 judged"),
            "{}",
            lines[4]
        );
        assert!(
            lines[5].contains("    3 ")
                && lines[5].contains("kept at epoch 3: in the top 1 of 1 (cutoff 0.2000)"),
            "{}",
            lines[5]
        );
        assert_eq!(lines.len(), 7);
        assert!(decision_lines(&pb::ListDecisionsResponse::default()).is_empty());
    }
}
