//! TPE in the store: a sweep starts with its random startup points; each point that settles
//! suggests the next in the same transaction, until the sweep has all its points; the same
//! results in the same order suggest the same points.

use super::*;

const TPE: &str = r#"
name = "tpe"
val_fraction = 0.2
lease_timeout_s = 10
[defaults]
max_epochs = 2
batch_size = 64
[search]
method = "tpe"
points = 30
search_seed = 3
[search.space]
learning_rate = { log_uniform = [1e-5, 1e-1] }
[grid]
seed = [0]
"#;

/// A bowl in log10(lr) with its bottom at 1e-3.
fn loss(lr: f64) -> f64 {
    (lr.log10() + 3.0).powi(2)
}

/// Runs the sweep to its end, one job at a time; the learning rates in point order, and the
/// number of points the model was told when it suggested each after the startup ones.
fn run() -> (Vec<f64>, Vec<u32>) {
    let mut store = Store::in_memory().unwrap();
    let spec = SweepSpec::parse(TPE).unwrap();
    let sweep = store
        .write(|tx| submit(tx, &spec, TPE, &dataset(), 1_000))
        .unwrap();
    assert_eq!(sweep.total, 10, "the startup points first");
    let w = store
        .write(|tx| register_worker(tx, "alpha", "cpu", 1, 1_000))
        .unwrap();
    let mut now = 2_000;
    loop {
        now += 10;
        let grants = store.write(|tx| lease_jobs(tx, &w, 1, now)).unwrap();
        let Some(g) = grants.first() else { break };
        let lr = g.job.trial.learning_rate;
        let m = EpochMetrics {
            val_loss: loss(lr),
            ..metrics(2)
        };
        store
            .write(|tx| complete(tx, &g.lease_id, &w, &[m], &result(0.7), now))
            .unwrap();
        let counts = store.read(|tx| sweep_counts(tx, &sweep.id)).unwrap();
        assert_eq!(
            counts.finished(),
            counts.done == 30,
            "a settled point suggests the next in its own transaction: {counts:?}"
        );
    }
    let (jobs, _) = store.read(|tx| jobs_page(tx, &sweep.id, 0, 100)).unwrap();
    let told: Vec<u32> = store
        .read(|tx| {
            Ok(tx
                .prepare("SELECT told FROM suggested_points ORDER BY point")?
                .query_map([], |r| r.get(0))?
                .collect::<Result<Vec<_>, _>>()?)
        })
        .unwrap();
    (jobs.iter().map(|j| j.trial.learning_rate).collect(), told)
}

#[test]
fn tpe_suggests_each_point_as_one_settles_from_the_scores_so_far_the_same_on_every_rerun() {
    let (lrs, told) = run();
    assert_eq!(lrs.len(), 30);
    for lr in &lrs {
        assert!((1e-5..=1e-1).contains(lr), "{lr}");
    }
    // Point 10 was suggested when the first point settled (1 told), ... one at a time, each
    // from the points finished by then.
    assert_eq!(told, (1..=20).collect::<Vec<u32>>());
    assert_eq!(run(), (lrs.clone(), told), "the same points on a rerun");
    // Told 10 or more, the model suggests (points 19 on): nearer the bottom than the random
    // startup points on average.
    let mean_loss = |lrs: &[f64]| lrs.iter().map(|lr| loss(*lr)).sum::<f64>() / lrs.len() as f64;
    let (startup, model) = (mean_loss(&lrs[..10]), mean_loss(&lrs[19..]));
    eprintln!("mean loss: startup {startup:.3}, model {model:.3}");
    assert!(
        model < startup / 2.0,
        "startup {startup}, model {model}: {lrs:?}"
    );
}
