//! Early-stopping decisions as pure functions of what points reported: the rungs, a point's score
//! at a rung (the mean over its seeds of the metric at that epoch), and the three rules —
//! synchronous successive halving, promotion-based ASHA, and the median rule — each over one
//! cohort (the points of one stratum). No clock, store or randomness: the same inputs give the same
//! decision, which is what makes `sync` mode the same on every rerun. Ties are broken by point
//! index, and a score that is not a number (a diverged seed) ranks below every number.

use std::cmp::Ordering;

use crate::sweep::search::Metric;

/// The epochs at which points are judged: `min_epochs · eta^k` below `max_epochs`, then
/// `max_epochs` itself (always the last rung).
pub fn rungs(min_epochs: u32, eta: u32, max_epochs: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut r = u64::from(min_epochs.max(1));
    while r < u64::from(max_epochs) {
        out.push(r as u32);
        r *= u64::from(eta.max(2));
    }
    out.push(max_epochs);
    out
}

/// A point's standing at one rung: the mean and sample standard deviation over its seeds of the
/// metric at that epoch (NaN when a seed diverged).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score {
    pub point: u32,
    pub mean: f64,
    pub std: f64,
    pub seeds: u32,
}

impl Score {
    /// The score of `point` from its seeds' values at the rung.
    pub fn of(point: u32, values: &[f64]) -> Score {
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let std = if values.len() > 1 {
            (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
        } else {
            0.0
        };
        Score {
            point,
            mean,
            std,
            seeds: values.len() as u32,
        }
    }
}

/// Best first: by the metric's direction, a NaN below every number, then by point index.
fn rank(metric: Metric, scores: &[Score]) -> Vec<Score> {
    let mut ranked = scores.to_vec();
    ranked.sort_by(|a, b| {
        let by_value = match (a.mean.is_nan(), b.mean.is_nan()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) => match metric {
                Metric::ValLoss => a.mean.total_cmp(&b.mean),
                Metric::ValAcc => b.mean.total_cmp(&a.mean),
            },
        };
        by_value.then(a.point.cmp(&b.point))
    });
    ranked
}

/// One decision over a cohort at a rung, with its inputs: what the store keeps and `status` shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Every point judged, best first.
    pub ranked: Vec<Score>,
    /// The worst score kept (None when nothing is kept).
    pub cutoff: Option<f64>,
    /// Points that go on (sync) or are promoted (async), in rank order.
    pub kept: Vec<u32>,
    /// Points stopped here, in rank order.
    pub stopped: Vec<u32>,
}

/// Synchronous successive halving: `cohort` holds every live point of the cohort, each with all
/// its seeds at the rung; the top ⌈n/eta⌉ go on and the rest stop.
pub fn halve(metric: Metric, eta: u32, cohort: &[Score]) -> Decision {
    let ranked = rank(metric, cohort);
    let keep = ranked.len().div_ceil(eta.max(2) as usize);
    split(ranked, keep)
}

/// Promotion-based ASHA at one rung: `recorded` holds every point that has reached the rung
/// (paused or already promoted), `promoted` those already sent on. The top ⌊n/eta⌋ of the
/// recorded points are promotable; none before `eta` points have arrived (no first-come free
/// pass). Returns the paused points to promote now, in rank order; nothing is stopped for good.
/// `at_end`: nothing else will arrive (the sweep has nothing left to run), so the top ⌈n/eta⌉
/// are promotable, as sync halving would keep — every cohort sends at least one point on.
pub fn promote(
    metric: Metric,
    eta: u32,
    recorded: &[Score],
    promoted: &[u32],
    at_end: bool,
) -> Vec<u32> {
    let ranked = rank(metric, recorded);
    let eta = eta.max(2) as usize;
    let top = if at_end {
        ranked.len().div_ceil(eta)
    } else {
        ranked.len() / eta
    };
    ranked
        .iter()
        .take(top)
        .map(|s| s.point)
        .filter(|p| !promoted.contains(p))
        .collect()
}

/// The points recorded at a rung before the median rule may stop anyone (Ray's and Katib's
/// `min_samples_required`/`min_trials_required` default).
pub const MEDIAN_MIN_POINTS: usize = 3;

/// The median rule on seed means: `point` stops at the rung when it is worse than the median of
/// the other recorded points' scores, once at least [`MEDIAN_MIN_POINTS`] others are recorded.
/// `None`: not enough points yet to judge.
pub fn median_stops(metric: Metric, point: &Score, others: &[Score]) -> Option<bool> {
    if others.len() < MEDIAN_MIN_POINTS {
        return None;
    }
    let median = median(metric, others)?;
    if point.mean.is_nan() {
        return Some(true);
    }
    if median.is_nan() {
        return Some(false);
    }
    Some(match metric {
        Metric::ValLoss => point.mean > median,
        Metric::ValAcc => point.mean < median,
    })
}

/// The median of the scores (a NaN counted as the worst); None for no scores.
pub fn median(metric: Metric, scores: &[Score]) -> Option<f64> {
    let ranked = rank(metric, scores);
    let n = ranked.len();
    if n == 0 {
        return None;
    }
    Some(if n % 2 == 1 {
        ranked[n / 2].mean
    } else {
        (ranked[n / 2 - 1].mean + ranked[n / 2].mean) / 2.0
    })
}

fn split(ranked: Vec<Score>, keep: usize) -> Decision {
    let kept: Vec<u32> = ranked.iter().take(keep).map(|s| s.point).collect();
    let stopped: Vec<u32> = ranked.iter().skip(keep).map(|s| s.point).collect();
    let cutoff = keep.checked_sub(1).map(|i| ranked[i].mean);
    Decision {
        ranked,
        cutoff,
        kept,
        stopped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rungs_grow_by_eta_and_end_at_max_epochs() {
        assert_eq!(rungs(1, 3, 27), [1, 3, 9, 27]);
        assert_eq!(rungs(1, 3, 20), [1, 3, 9, 20]);
        assert_eq!(rungs(2, 3, 20), [2, 6, 18, 20]);
        assert_eq!(rungs(5, 2, 12), [5, 10, 12]);
        assert_eq!(rungs(1, 3, 1), [1]);
        assert_eq!(rungs(4, 4, 4), [4]);
        assert_eq!(rungs(1, 100, 100_000), [1, 100, 10_000, 100_000]);
    }

    #[test]
    fn a_score_is_the_mean_and_sample_spread_over_seeds() {
        let s = Score::of(3, &[0.5, 0.7, 0.9]);
        assert!(
            (s.mean - 0.7).abs() < 1e-12 && (s.std - 0.2).abs() < 1e-12,
            "{s:?}"
        );
        assert_eq!((s.point, s.seeds), (3, 3));
        assert_eq!(Score::of(0, &[0.4]).std, 0.0);
    }

    /// Nine points' seed losses, by hand: means 0.9, 0.5, 0.7, 0.3, 0.8, 0.4, 0.6, 0.2, 1.0.
    fn nine() -> Vec<Score> {
        [0.9, 0.5, 0.7, 0.3, 0.8, 0.4, 0.6, 0.2, 1.0]
            .iter()
            .enumerate()
            .map(|(p, &m)| Score::of(p as u32, &[m - 0.1, m, m + 0.1]))
            .collect()
    }

    #[test]
    fn sync_halving_keeps_the_best_third_by_seed_mean() {
        let d = halve(Metric::ValLoss, 3, &nine());
        assert_eq!(d.kept, [7, 3, 5], "means 0.2, 0.3, 0.4");
        assert_eq!(d.stopped, [1, 6, 2, 4, 0, 8]);
        assert!((d.cutoff.unwrap() - 0.4).abs() < 1e-12);
        // Accuracy is maximised: the same numbers keep the other end.
        let d = halve(Metric::ValAcc, 3, &nine());
        assert_eq!(d.kept, [8, 0, 4]);
        // ⌈10/3⌉ = 4 go on; one point alone goes on.
        let mut ten = nine();
        ten.push(Score::of(9, &[0.35]));
        assert_eq!(halve(Metric::ValLoss, 3, &ten).kept, [7, 3, 9, 5]);
        assert_eq!(halve(Metric::ValLoss, 3, &ten[..1]).kept, [0]);
    }

    #[test]
    fn the_mean_decides_not_the_luckiest_seed() {
        // Point 0 has the best single seed (0.1) but the worse mean; single-seed halving on seed 0
        // would keep it, halving on means keeps point 1.
        let cohort = [
            Score::of(0, &[0.1, 0.9, 0.9]),
            Score::of(1, &[0.3, 0.3, 0.3]),
        ];
        assert_eq!(halve(Metric::ValLoss, 2, &cohort).kept, [1]);
        let seed0 = [Score::of(0, &[0.1]), Score::of(1, &[0.3])];
        assert_eq!(halve(Metric::ValLoss, 2, &seed0).kept, [0]);
    }

    #[test]
    fn ties_go_to_the_lower_point_index_and_nan_ranks_last() {
        let cohort = [
            Score::of(5, &[0.3]),
            Score::of(2, &[f64::NAN, 0.1]),
            Score::of(4, &[0.3]),
            Score::of(1, &[0.6]),
        ];
        let d = halve(Metric::ValLoss, 2, &cohort);
        assert_eq!(d.kept, [4, 5]);
        assert_eq!(d.stopped, [1, 2]);
        assert_eq!(
            halve(Metric::ValAcc, 2, &cohort).stopped,
            [5, 2],
            "NaN last either way"
        );
        // Order of arrival does not matter.
        let mut reversed = cohort.to_vec();
        reversed.reverse();
        let again = halve(Metric::ValLoss, 2, &reversed);
        assert_eq!((again.kept, again.stopped), (d.kept, d.stopped));
    }

    #[test]
    fn asha_promotes_the_top_third_only_once_eta_points_have_arrived() {
        let all = nine();
        assert!(
            promote(Metric::ValLoss, 3, &all[..2], &[], false).is_empty(),
            "no free pass"
        );
        // Points 0, 1, 2 (means 0.9, 0.5, 0.7): one may go on, the best.
        assert_eq!(promote(Metric::ValLoss, 3, &all[..3], &[], false), [1]);
        // Six arrived (means 0.9 .. 0.4): the top two are 3 and 5; 1 was promoted before and
        // is not promoted again, though it is no longer in the top two.
        assert_eq!(promote(Metric::ValLoss, 3, &all[..6], &[1], false), [3, 5]);
        assert_eq!(
            promote(Metric::ValLoss, 3, &all[..6], &[1, 3, 5], false),
            Vec::<u32>::new()
        );
        // At the end nothing more will arrive: ⌈n/eta⌉, so two points alone send one on.
        assert_eq!(promote(Metric::ValLoss, 3, &all[..2], &[], true), [1]);
        assert_eq!(promote(Metric::ValLoss, 3, &all[..7], &[1, 3], true), [5]);
    }

    #[test]
    fn the_median_rule_stops_a_point_worse_than_the_others_median() {
        let others = [
            Score::of(0, &[0.4]),
            Score::of(1, &[0.6]),
            Score::of(2, &[0.5]),
        ];
        assert_eq!(
            median_stops(Metric::ValLoss, &Score::of(3, &[0.55]), &others),
            Some(true)
        );
        assert_eq!(
            median_stops(Metric::ValLoss, &Score::of(3, &[0.45]), &others),
            Some(false)
        );
        assert_eq!(
            median_stops(Metric::ValAcc, &Score::of(3, &[0.45]), &others),
            Some(true)
        );
        assert_eq!(
            median_stops(Metric::ValLoss, &Score::of(3, &[0.9]), &others[..2]),
            None
        );
        let four = [others[0], others[1], others[2], Score::of(4, &[0.7])];
        // Median of 0.4, 0.5, 0.6, 0.7 is 0.55.
        assert_eq!(
            median_stops(Metric::ValLoss, &Score::of(3, &[0.56]), &four),
            Some(true)
        );
        assert_eq!(
            median_stops(Metric::ValLoss, &Score::of(3, &[0.54]), &four),
            Some(false)
        );
        assert_eq!(
            median_stops(Metric::ValLoss, &Score::of(3, &[f64::NAN]), &four),
            Some(true)
        );
    }
}
