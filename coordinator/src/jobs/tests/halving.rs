//! Successive halving in the store: the decision a hand computation gives, made once, by the
//! report that completes a rung; stopped points' jobs end, kept ones go on; results never rank a
//! stopped point.

use super::*;
use crate::results::aggregate;

/// Six points (learning rates) × two seeds, halved at epoch 1 (rungs 1 and 3, eta 3).
const HALVING: &str = r#"
name = "halving"
val_fraction = 0.2
lease_timeout_s = 10
[defaults]
max_epochs = 3
batch_size = 64
[grid]
learning_rate = [1e-3, 2e-3, 3e-3, 4e-3, 5e-3, 6e-3]
seed = [0, 1]
[search.stop]
rule = "halving"
min_epochs = 1
eta = 3
"#;

/// Each point's two seeds' validation losses at epoch 1. Seed means: 0.8, 0.5, 0.45, 0.3, 0.6,
/// 0.4 — so halving keeps ⌈6/3⌉ = 2 points, 3 (0.3) and 5 (0.4). Point 1 has the best single seed
/// (0.2): deciding on seed 0 alone would have kept it.
const LOSSES: [[f64; 2]; 6] = [
    [0.9, 0.7],
    [0.2, 0.8],
    [0.45, 0.45],
    [0.3, 0.3],
    [0.6, 0.6],
    [0.35, 0.45],
];

fn at(epoch: u32, val_loss: f64) -> EpochMetrics {
    EpochMetrics {
        val_loss,
        ..metrics(epoch)
    }
}

/// The point (0..6) and seed of a grant.
fn point_of(g: &LeaseGrant) -> (usize, usize) {
    let t = &g.job.trial;
    (
        (t.learning_rate * 1e3).round() as usize - 1,
        t.seed as usize,
    )
}

fn decisions(store: &mut Store) -> Vec<(u32, String, String, Option<f64>)> {
    store
        .read(|tx| {
            Ok(tx
                .prepare(
                    "SELECT rung, kept_json, stopped_json, cutoff FROM decisions ORDER BY rung",
                )?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                .collect::<Result<Vec<_>, _>>()?)
        })
        .unwrap()
}

#[test]
fn halving_on_seed_means_stops_the_points_a_hand_computation_says_once() {
    let mut store = Store::in_memory().unwrap();
    let spec = SweepSpec::parse(HALVING).unwrap();
    let sweep = store
        .write(|tx| submit(tx, &spec, HALVING, &dataset(), 1_000))
        .unwrap();
    let w = store
        .write(|tx| register_worker(tx, "alpha", "cpu", 12, 1_000))
        .unwrap();
    let mut grants = store.write(|tx| lease_jobs(tx, &w, 12, 2_000)).unwrap();
    assert_eq!(grants.len(), 12);
    // The last report of the rung is point 3's second seed (a point that is kept).
    grants.sort_by_key(|g| point_of(g) == (3, 1));
    let report = |store: &mut Store, g: &LeaseGrant, m: EpochMetrics, now| {
        store
            .write(|tx| report_epoch(tx, &g.lease_id, &w, &[m], None, now))
            .unwrap()
    };
    for (i, g) in grants.iter().enumerate() {
        let (p, s) = point_of(g);
        let ack = report(&mut store, g, at(1, LOSSES[p][s]), 3_000 + i as i64);
        // Each seed waits at the rung until it is decided (its lane goes back), except the one
        // whose report decides it, for a point that is kept.
        assert_eq!(ack.cancel, i < 11, "point {p} seed {s}");
        assert_eq!(
            decisions(&mut store).len(),
            usize::from(i == 11),
            "decided by the 12th report, not before"
        );
    }
    assert_eq!(
        decisions(&mut store),
        [(1, "[3,5]".to_string(), "[2,1,4,0]".to_string(), Some(0.4))]
    );
    // A retried report of the rung decides nothing again.
    report(&mut store, &grants[11], at(1, 0.3), 3_100);
    assert_eq!(decisions(&mut store).len(), 1);
    // The stopped points' waiting seeds ended at the decision; the kept ones' are queued again.
    let (jobs, _) = store.read(|tx| jobs_page(tx, &sweep.id, 0, 100)).unwrap();
    for j in &jobs {
        let p = (j.trial.learning_rate * 1e3).round() as usize - 1;
        match &j.state {
            JobState::Cancelled { reason } => {
                assert!(![3, 5].contains(&p));
                assert_eq!(reason, "stopped early at epoch 1 by successive halving");
            }
            JobState::Queued => assert!([3, 5].contains(&p) && (p, j.trial.seed) != (3, 1)),
            JobState::Leased { .. } => assert_eq!((p, j.trial.seed), (3, 1)),
            other => panic!("point {p}: {other:?}"),
        }
    }
    // The kept points finish; results rank only them and mark the others.
    let resumed = store.write(|tx| lease_jobs(tx, &w, 12, 4_000)).unwrap();
    assert_eq!(resumed.len(), 3);
    for g in resumed.iter().chain(std::iter::once(&grants[11])) {
        let (p, s) = point_of(g);
        store
            .write(|tx| {
                let epochs = [at(2, LOSSES[p][s]), at(3, LOSSES[p][s])];
                complete(tx, &g.lease_id, &w, &epochs, &result(0.7), 5_000)
            })
            .unwrap();
    }
    let counts = store.read(|tx| sweep_counts(tx, &sweep.id)).unwrap();
    assert_eq!((counts.done, counts.cancelled, counts.leased), (4, 8, 0));
    let outcomes = store.read(|tx| sweep_outcomes(tx, &sweep.id)).unwrap();
    let agg = aggregate(&outcomes);
    let stopped: Vec<Option<u32>> = agg.rows.iter().map(|r| r.stopped_at).collect();
    assert_eq!(stopped, [Some(1), Some(1), Some(1), None, Some(1), None]);
    assert!(matches!(agg.best, Some(3 | 5)), "{:?}", agg.best);
    // The same file again: its kept points' jobs are reused, its stopped ones are judged at
    // submission on the epochs they reported (no report will carry them again) and stay stopped.
    let again = store
        .write(|tx| submit(tx, &spec, HALVING, &dataset(), 6_000))
        .unwrap();
    assert_eq!(
        (again.done, again.cancelled, again.queued, again.finished()),
        (4, 8, 0, true),
        "{again:?}"
    );
    let second: Vec<(u32, String, String)> = store
        .read(|tx| {
            Ok(tx
                .prepare("SELECT rung, kept_json, stopped_json FROM decisions WHERE sweep_id = ?1")?
                .query_map([&again.id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<Vec<_>, _>>()?)
        })
        .unwrap();
    assert_eq!(second, [(1, "[3,5]".to_string(), "[2,1,4,0]".to_string())]);
}

#[test]
fn without_halving_no_decision_is_made() {
    let (mut store, _sweep, w1, _) = setup();
    let grants = store.write(|tx| lease_jobs(tx, &w1, 6, 2_000)).unwrap();
    for g in &grants {
        let ack = store
            .write(|tx| report_epoch(tx, &g.lease_id, &holder(g), &[metrics(1)], None, 3_000))
            .unwrap();
        assert!(!ack.cancel);
    }
    assert!(decisions(&mut store).is_empty());
}
