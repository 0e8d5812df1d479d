//! Aggregating a sweep's jobs per grid point (every hyperparameter but the seed): how many seeds
//! finished, failed, were cancelled or are still to come; the mean and standard deviation over the
//! finished seeds of test accuracy (final and at the best epoch), of the validation numbers at the
//! best epoch and of training time; the best point, chosen on validation as MASE chooses its
//! checkpoint (lowest validation loss), never on test; the points tied with it within the seeds'
//! spread; and hints when the best sits at the edge of a swept range.

use std::collections::HashMap;

use jetsweep_proto::metrics::{EpochSummary, TrialResult};
use jetsweep_proto::state::JobStatus;
use jetsweep_proto::trial::Optimizer;

use crate::sweep::Trial;

/// One job of a sweep as results see it.
#[derive(Debug, Clone, PartialEq)]
pub struct TrialOutcome {
    pub trial: Trial,
    pub status: JobStatus,
    /// Set when done: the result, and the summary of its epochs when every one was reported.
    pub done: Option<(TrialResult, Option<EpochSummary>)>,
    /// The rung (epoch) at which early stopping stopped the job's point, in this sweep.
    pub stopped_at: Option<u32>,
}

/// Mean and sample standard deviation (0 for one value) of one number over a point's seeds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub mean: f64,
    pub std: f64,
}

impl Spread {
    /// `None` for no values.
    pub fn of(xs: &[f64]) -> Option<Spread> {
        if xs.is_empty() {
            return None;
        }
        let n = xs.len() as f64;
        let mean = xs.iter().sum::<f64>() / n;
        let var = if xs.len() > 1 {
            xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
        } else {
            0.0
        };
        Some(Spread {
            mean,
            std: var.sqrt(),
        })
    }
}

/// One grid point's results. The spreads are over the finished seeds (the validation numbers and
/// time over those whose every epoch was reported); `None` when there are none.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultRow {
    /// The point's hyperparameters; `seed` is meaningless here (0).
    pub point: Trial,
    /// Seeds finished, failed for good, cancelled, and queued or running.
    pub seeds: u32,
    pub failed: u32,
    pub cancelled: u32,
    pub pending: u32,
    pub test_acc: Option<Spread>,
    pub best_test_acc: Option<Spread>,
    pub best_epoch: Option<Spread>,
    pub best_val_loss: Option<Spread>,
    pub best_val_acc: Option<Spread>,
    pub train_seconds: Option<Spread>,
    /// Within the seeds' spread of the best point's validation loss (the best point itself too,
    /// when any other is): the data cannot tell them apart.
    pub tie: bool,
    /// Early stopping stopped the point at this epoch: it is never ranked against finished points.
    pub stopped_at: Option<u32>,
}

/// A sweep's results: rows in grid order (a row for every point, finished or not), the best
/// row, and hints for the next sweep.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Aggregate {
    pub rows: Vec<ResultRow>,
    pub best: Option<usize>,
    pub hints: Vec<String>,
}

/// A grid point's identity: every hyperparameter but the seed (the real ones by their bits).
pub(crate) type PointKey = (String, Optimizer, u32, u32, u64, u64);

/// The numbers of one point's finished seeds, gathered before they are reduced.
#[derive(Default)]
struct Gathered {
    counts: [u32; 4],
    test_acc: Vec<f64>,
    best_test_acc: Vec<f64>,
    best_epoch: Vec<f64>,
    best_val_loss: Vec<f64>,
    best_val_acc: Vec<f64>,
    train_seconds: Vec<f64>,
    stopped_at: Option<u32>,
}

/// Aggregates `outcomes` (a sweep's jobs in grid order). One pass over the jobs (a 100,000-job
/// sweep must not cost 100,000² comparisons), then one over the points.
/// A trial's grid point: its configuration without the seed.
pub(crate) fn point_key(t: &Trial) -> PointKey {
    (
        t.model.name.clone(),
        t.optimizer,
        t.batch_size,
        t.max_epochs,
        t.learning_rate.to_bits(),
        t.weight_decay.to_bits(),
    )
}

pub fn aggregate<'a>(outcomes: impl IntoIterator<Item = &'a TrialOutcome>) -> Aggregate {
    let mut index: HashMap<PointKey, usize> = HashMap::new();
    let mut points: Vec<(Trial, Gathered)> = Vec::new();
    for o in outcomes {
        let t = &o.trial;
        let i = *index.entry(point_key(t)).or_insert_with(|| {
            let point = Trial {
                seed: 0,
                ..t.clone()
            };
            points.push((point, Gathered::default()));
            points.len() - 1
        });
        let g = &mut points[i].1;
        g.stopped_at = g.stopped_at.max(o.stopped_at);
        g.counts[match o.status {
            JobStatus::Done => 0,
            JobStatus::Failed => 1,
            JobStatus::Cancelled => 2,
            JobStatus::Queued | JobStatus::Leased | JobStatus::Paused => 3,
        }] += 1;
        if let Some((result, summary)) = &o.done {
            g.test_acc.push(result.test_acc);
            g.best_test_acc.push(result.best_test_acc);
            g.best_epoch.push(f64::from(result.best_epoch));
            if let Some(s) = summary {
                g.best_val_loss.push(s.best_val_loss);
                g.best_val_acc.push(s.best_val_acc);
                g.train_seconds.push(s.train_seconds);
            }
        }
    }
    let mut rows: Vec<ResultRow> = points
        .into_iter()
        .map(|(point, g)| ResultRow {
            point,
            seeds: g.counts[0],
            failed: g.counts[1],
            cancelled: g.counts[2],
            pending: g.counts[3],
            test_acc: Spread::of(&g.test_acc),
            best_test_acc: Spread::of(&g.best_test_acc),
            best_epoch: Spread::of(&g.best_epoch),
            best_val_loss: Spread::of(&g.best_val_loss),
            best_val_acc: Spread::of(&g.best_val_acc),
            train_seconds: Spread::of(&g.train_seconds),
            tie: false,
            stopped_at: g.stopped_at,
        })
        .collect();
    // A best, and advice, only once every point still in the running has all its results: with
    // seeds to come (or cancelled before any finished), a point without results could be the
    // best. (A point whose every seed failed has its result: it fails.)
    let settled = rows
        .iter()
        .filter(|r| r.stopped_at.is_none())
        .all(|r| r.pending == 0 && (r.seeds > 0 || r.cancelled == 0));
    let best = rows
        .iter()
        .enumerate()
        .filter(|_| settled)
        .filter(|(_, r)| r.stopped_at.is_none())
        .filter_map(|(i, r)| Some((i, r.best_val_loss?.mean)))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, _)| i);
    let mut hints = Vec::new();
    if let Some(b) = best {
        mark_ties(&mut rows, b);
        hints = edge_hints(&rows, b);
    }
    Aggregate { rows, best, hints }
}

/// Marks the rows whose mean validation loss is within the seeds' spread of the best's: the
/// difference is no larger than either point's standard deviation.
fn mark_ties(rows: &mut [ResultRow], best: usize) {
    let b = rows[best]
        .best_val_loss
        .expect("the best has a validation loss");
    let mut tied = false;
    for (i, row) in rows.iter_mut().enumerate() {
        if i == best || row.stopped_at.is_some() {
            continue;
        }
        if let Some(r) = row.best_val_loss
            && (r.mean - b.mean).abs() <= b.std.max(r.std)
        {
            row.tie = true;
            tied = true;
        }
    }
    rows[best].tie = tied;
}

/// A swept quantity as hints name it: its name, its value as a number, the best point's value as
/// shown, and the words for values below and above the range.
type Axis = (
    &'static str,
    fn(&Trial) -> f64,
    String,
    &'static str,
    &'static str,
);

/// For each swept quantity with at least three values among the points, a hint when the best
/// point has the smallest or largest of them: the optimum may lie outside the grid.
fn edge_hints(rows: &[ResultRow], best: usize) -> Vec<String> {
    let b = &rows[best].point;
    let axes: [Axis; 4] = [
        (
            "batch_size",
            |t| f64::from(t.batch_size),
            b.batch_size.to_string(),
            "smaller",
            "larger",
        ),
        (
            "max_epochs",
            |t| f64::from(t.max_epochs),
            b.max_epochs.to_string(),
            "fewer",
            "more",
        ),
        (
            "learning_rate",
            |t| t.learning_rate,
            format!("{:e}", b.learning_rate),
            "smaller",
            "larger",
        ),
        (
            "model",
            |t| t.model.param_count() as f64,
            format!("{}, {} parameters", b.model.name, b.model.param_count()),
            "smaller",
            "larger",
        ),
    ];
    let mut hints = Vec::new();
    for (name, value, shown, below, above) in axes {
        let mut values: Vec<f64> = rows.iter().map(|r| value(&r.point)).collect();
        values.sort_by(f64::total_cmp);
        values.dedup();
        if values.len() < 3 {
            continue;
        }
        let v = value(b);
        let side = if v == values[0] {
            Some(("smallest", below))
        } else if v == values[values.len() - 1] {
            Some(("largest", above))
        } else {
            None
        };
        if let Some((edge, try_next)) = side {
            hints.push(format!(
                "the best {name} ({shown}) is the {edge} in the grid: try {try_next} values"
            ));
        }
    }
    hints
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(batch_size: u32, seed: u64, status: JobStatus) -> TrialOutcome {
        TrialOutcome {
            trial: Trial {
                model: "jsc-tiny".parse().unwrap(),
                optimizer: Default::default(),
                batch_size,
                max_epochs: 10,
                learning_rate: 1e-3,
                seed,
                weight_decay: 0.0,
            },
            status,
            done: None,
            stopped_at: None,
        }
    }

    fn done(batch_size: u32, seed: u64, acc: f64, val_loss: f64) -> TrialOutcome {
        TrialOutcome {
            done: Some((
                TrialResult {
                    params: 117,
                    test_acc: acc,
                    best_epoch: 9,
                    best_test_acc: acc + 0.01,
                },
                Some(EpochSummary {
                    best_val_loss: val_loss,
                    best_val_acc: 1.0 - val_loss,
                    train_seconds: 2.0,
                    ..Default::default()
                }),
            )),
            ..outcome(batch_size, seed, JobStatus::Done)
        }
    }

    #[test]
    fn every_point_has_a_row_counting_its_seeds_by_state() {
        let jobs = vec![
            done(64, 0, 0.70, 0.9),
            done(64, 1, 0.72, 0.9),
            outcome(64, 2, JobStatus::Queued),
            done(128, 0, 0.74, 0.8),
            outcome(128, 1, JobStatus::Failed),
            outcome(256, 0, JobStatus::Failed),
            outcome(256, 1, JobStatus::Cancelled),
            outcome(256, 2, JobStatus::Leased),
        ];
        let a = aggregate(&jobs);
        assert_eq!(
            a.rows.len(),
            3,
            "a point with no finished seed still has a row"
        );
        let counts: Vec<_> = a
            .rows
            .iter()
            .map(|r| {
                (
                    r.point.batch_size,
                    r.seeds,
                    r.failed,
                    r.cancelled,
                    r.pending,
                )
            })
            .collect();
        assert_eq!(
            counts,
            [(64, 2, 0, 0, 1), (128, 1, 1, 0, 0), (256, 0, 1, 1, 1)]
        );
        let t = a.rows[0].test_acc.unwrap();
        assert!((t.mean - 0.71).abs() < 1e-12);
        assert!((t.std - 0.02 / 2f64.sqrt()).abs() < 1e-12, "sample std");
        assert_eq!(a.rows[1].test_acc.unwrap().std, 0.0);
        assert_eq!(
            a.rows[2].test_acc, None,
            "nothing finished: no number, not 0"
        );
        assert_eq!(
            a.best, None,
            "no best while seeds are to come: 64 and 256 have some left"
        );
        let settled: Vec<TrialOutcome> = jobs
            .iter()
            .filter(|o| {
                !matches!(
                    o.status,
                    JobStatus::Leased | JobStatus::Queued | JobStatus::Cancelled
                )
            })
            .cloned()
            .collect();
        assert_eq!(aggregate(&settled).best, Some(1), "lowest validation loss");
        assert_eq!(aggregate(&[]), Aggregate::default());
    }

    #[test]
    fn the_best_is_chosen_on_validation_and_ties_within_the_spread_are_marked() {
        // 64 has the higher test accuracy but the worse validation loss: validation decides.
        let jobs = vec![
            done(64, 0, 0.80, 0.50),
            done(64, 1, 0.80, 0.52),
            done(128, 0, 0.70, 0.40),
            done(128, 1, 0.70, 0.44),
            done(256, 0, 0.70, 0.43),
            done(256, 1, 0.70, 0.43),
        ];
        let a = aggregate(&jobs);
        assert_eq!(a.best, Some(1));
        // 256's mean 0.43 is within 128's std (0.028) of its mean 0.42; 64's 0.51 is not.
        let ties: Vec<bool> = a.rows.iter().map(|r| r.tie).collect();
        assert_eq!(ties, [false, true, true]);
        assert!(a.hints.is_empty(), "128 is inside the grid: {:?}", a.hints);
    }

    #[test]
    fn a_best_at_the_edge_of_a_swept_range_says_so() {
        let jobs = vec![
            done(64, 0, 0.7, 0.3),
            done(128, 0, 0.7, 0.4),
            done(256, 0, 0.7, 0.5),
        ];
        let a = aggregate(&jobs);
        assert_eq!(a.best, Some(0));
        assert_eq!(
            a.hints,
            ["the best batch_size (64) is the smallest in the grid: try smaller values"]
        );
        // Without validation numbers there is no best (test accuracy never chooses).
        let mut blind = jobs.clone();
        for o in &mut blind {
            o.done.as_mut().unwrap().1 = None;
        }
        assert_eq!(aggregate(&blind).best, None);
    }
}
