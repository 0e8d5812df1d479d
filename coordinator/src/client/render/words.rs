//! Results put in words, the same in the terminal and in the report: what a grid point's seeds
//! did, the marker of the best point and its ties, a job's state.

use jetsweep_proto::model::Architecture;
use jetsweep_proto::state::JobStatus;
use jetsweep_proto::v1 as pb;

/// Trainable parameters of the model a result names (`None` for a name that does not parse).
pub fn model_params(name: &str) -> Option<usize> {
    name.parse::<Architecture>().ok().map(|m| m.param_count())
}

/// `mean ± std` of a fraction in percent with two decimals, or `-` when no seed measured it: how
/// accuracy reads in every table (terminal, report, dashboard). One seed has no spread: `± –`.
pub fn pct(mean: Option<f64>, std: Option<f64>) -> String {
    match (mean, std) {
        (Some(mean), Some(std)) => format!("{:.2} ± {:.2}", 100.0 * mean, 100.0 * std),
        (Some(mean), None) => format!("{:.2} ± –", 100.0 * mean),
        (None, _) => "-".into(),
    }
}

/// A real hyperparameter (learning rate, weight decay) as tables show it: three significant digits
/// in scientific form without trailing zeros (`1e-3`, `3.16e-3`, `2.5e-4`), `0` for zero.
pub fn real(x: f64) -> String {
    if x == 0.0 {
        return "0".into();
    }
    let text = format!("{x:.2e}");
    let (mantissa, exponent) = text.split_once('e').unwrap_or((&text, "0"));
    let mantissa = mantissa.trim_end_matches('0').trim_end_matches('.');
    format!("{mantissa}e{exponent}")
}

/// `mean ± std` with `digits` decimals (`± –` for one seed), or `-`.
pub fn plain(mean: Option<f64>, std: Option<f64>, digits: usize) -> String {
    match (mean, std) {
        (Some(mean), Some(std)) => format!("{mean:.digits$} ± {std:.digits$}"),
        (Some(mean), None) => format!("{mean:.digits$} ± –"),
        (None, _) => "-".into(),
    }
}

/// What a grid point's seeds are doing, when not all of them finished: "1 failed, 2 to go".
pub fn seed_note(row: &pb::ResultRow) -> String {
    let mut parts = Vec::new();
    if let Some(epoch) = row.stopped_at_epoch {
        parts.push(format!("stopped at epoch {epoch}"));
    }
    if row.failed > 0 {
        parts.push(format!("{} failed", row.failed));
    }
    if row.cancelled > 0 && row.stopped_at_epoch.is_none() {
        parts.push(format!("{} cancelled", row.cancelled));
    }
    if row.pending > 0 {
        parts.push(format!("{} to go", row.pending));
    }
    parts.join(", ")
}

/// The marker after a row: the best (chosen on validation), and points it cannot be told from.
pub fn marker(r: &pb::GetResultsResponse, i: usize) -> &'static str {
    match (i as i32 == r.best, r.rows[i].tie) {
        (true, false) => "← best",
        (true, true) => "← best (tied)",
        (false, true) => "← tie",
        (false, false) => "",
    }
}

/// A table's weight-decay column: shown only when some trial decays (most sweeps do not).
pub struct DecayColumn(bool);

impl DecayColumn {
    pub fn of<'a>(specs: impl IntoIterator<Item = Option<&'a pb::TrialSpec>>) -> DecayColumn {
        DecayColumn(
            specs
                .into_iter()
                .any(|s| s.is_some_and(|s| s.weight_decay != 0.0)),
        )
    }

    /// The header cell, with its leading space, or nothing.
    pub fn header(&self) -> String {
        self.cell_text("WD")
    }

    /// A row's cell, with its leading space, or nothing.
    pub fn cell(&self, weight_decay: f64) -> String {
        self.cell_text(&real(weight_decay))
    }

    fn cell_text(&self, text: &str) -> String {
        if self.0 {
            format!(" {text:>8}")
        } else {
            String::new()
        }
    }
}

/// One job's state as people read it.
pub fn job_state(j: &pb::JobView) -> &'static str {
    pb::JobState::try_from(j.state)
        .ok()
        .and_then(|s| JobStatus::try_from(s).ok())
        .map_or("unknown", JobStatus::shown)
}

/// Unix milliseconds as `YYYY-MM-DD HH:MM UTC` (proleptic Gregorian, from the days since 1970).
pub fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// `text` with its control characters (terminal escapes, newlines) shown as `?`: a name or error
/// another party wrote, made safe to print on a terminal.
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn reals_read_short() {
        for (x, shown) in [
            (1e-3, "1e-3"),
            (0.00316228, "3.16e-3"),
            (2.5e-4, "2.5e-4"),
            (0.1, "1e-1"),
            (0.0, "0"),
            (12.0, "1.2e1"),
        ] {
            assert_eq!(super::real(x), shown);
        }
    }
}
