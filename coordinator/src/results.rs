//! Aggregating a sweep's finished jobs: per grid point (every hyperparameter but the seed), the mean
//! and standard deviation over seeds of the final and best-epoch test accuracy, and the best point.

use std::collections::HashMap;

use jetsweep_proto::trial::Optimizer;

use crate::sweep::Trial;
use jetsweep_proto::metrics::TrialResult;

/// One grid point's results.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultRow {
    /// The point's hyperparameters; `seed` is meaningless here (0).
    pub point: Trial,
    /// Finished seeds at this point.
    pub seeds: u32,
    pub mean_test_acc: f64,
    pub std_test_acc: f64,
    pub mean_best_test_acc: f64,
    pub std_best_test_acc: f64,
}

/// Mean and sample standard deviation (0 for a single value).
fn mean_std(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = if xs.len() > 1 {
        xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

/// A grid point's identity: every hyperparameter but the seed (the learning rate by its bits).
type PointKey = (String, Optimizer, u32, u32, u64);

/// Rows in the order points first appear in `finished` (grid order), for points with at least one
/// finished seed, and the index of the row with the highest mean best-epoch test accuracy. One pass
/// (a 100,000-job sweep must not cost 100,000² comparisons).
pub fn aggregate<'a>(
    finished: impl IntoIterator<Item = &'a (Trial, TrialResult)>,
) -> (Vec<ResultRow>, Option<usize>) {
    let mut index: HashMap<PointKey, usize> = HashMap::new();
    let mut points: Vec<(Trial, Vec<f64>, Vec<f64>)> = Vec::new();
    for (t, result) in finished {
        let key = (
            t.model.name.clone(),
            t.optimizer,
            t.batch_size,
            t.max_epochs,
            t.learning_rate.to_bits(),
        );
        let i = *index.entry(key).or_insert_with(|| {
            points.push((
                Trial {
                    seed: 0,
                    ..t.clone()
                },
                Vec::new(),
                Vec::new(),
            ));
            points.len() - 1
        });
        points[i].1.push(result.test_acc);
        points[i].2.push(result.best_test_acc);
    }
    let rows: Vec<ResultRow> = points
        .into_iter()
        .map(|(point, last, best)| {
            let (mean_test_acc, std_test_acc) = mean_std(&last);
            let (mean_best_test_acc, std_best_test_acc) = mean_std(&best);
            ResultRow {
                point,
                seeds: last.len() as u32,
                mean_test_acc,
                std_test_acc,
                mean_best_test_acc,
                std_best_test_acc,
            }
        })
        .collect();
    let best = (0..rows.len()).max_by(|&a, &b| {
        rows[a]
            .mean_best_test_acc
            .total_cmp(&rows[b].mean_best_test_acc)
    });
    (rows, best)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::{Job, JobState};

    /// The finished jobs' trials and results, as the store gives them.
    fn finished(jobs: &[Job]) -> Vec<(Trial, TrialResult)> {
        jobs.iter()
            .filter_map(|j| match &j.state {
                JobState::Done { result } => Some((j.trial.clone(), result.clone())),
                _ => None,
            })
            .collect()
    }

    fn job(batch_size: u32, seed: u64, state: JobState) -> Job {
        Job {
            id: format!("{batch_size}-{seed}"),
            trial: Trial {
                model: "jsc-tiny".parse().unwrap(),
                optimizer: Default::default(),
                batch_size,
                max_epochs: 10,
                learning_rate: 1e-3,
                seed,
            },
            dataset_sha256: "d".into(),
            state,
            attempts: 1,
            max_attempts: 3,
            epochs_done: 10,
            latest: None,
            sweep_id: None,
        }
    }

    fn done(acc: f64, best: f64) -> JobState {
        JobState::Done {
            result: TrialResult {
                params: 117,
                test_acc: acc,
                best_epoch: 9,
                best_test_acc: best,
            },
        }
    }

    #[test]
    fn groups_seeds_per_point_with_mean_and_sample_std() {
        let jobs = vec![
            job(64, 0, done(0.70, 0.71)),
            job(64, 1, done(0.72, 0.73)),
            job(64, 2, JobState::Queued),
            job(128, 0, done(0.74, 0.76)),
            job(256, 0, JobState::Failed { error: "x".into() }),
        ];
        let (rows, best) = aggregate(&finished(&jobs));
        assert_eq!(rows.len(), 2, "a point with no finished seed has no row");
        assert_eq!((rows[0].point.batch_size, rows[0].seeds), (64, 2));
        assert!((rows[0].mean_test_acc - 0.71).abs() < 1e-12);
        assert!((rows[0].std_test_acc - 0.02f64.hypot(0.0) / 2f64.sqrt()).abs() < 1e-12);
        assert_eq!((rows[1].seeds, rows[1].std_test_acc), (1, 0.0));
        assert_eq!(best, Some(1));
        assert_eq!(aggregate(&[]), (vec![], None));
    }
}
