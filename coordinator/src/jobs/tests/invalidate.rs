//! A distrusted worker's results forgotten (`invalidate_worker`), and sweeps that reuse nothing.

use super::*;

fn submit_text(store: &mut Store, text: &str) -> SweepCounts {
    let spec = SweepSpec::parse(text).unwrap();
    store
        .write(|tx| submit(tx, &spec, text, &dataset(), 1_000))
        .unwrap()
}

const FOUR: &str = "name = \"four\"\n[defaults]\nmax_epochs = 3\n[grid]\nseed = [0, 1, 2, 3]\n";

/// What the store holds of a job: state, result, epochs reported over all attempts, saved state.
fn job_row(store: &mut Store, job: &str) -> (String, bool, i64, i64) {
    store
        .read(|tx| {
            Ok(tx.query_row(
                "SELECT state, result_json IS NOT NULL,
                        (SELECT COUNT(*) FROM epochs e JOIN attempts a ON a.lease_id = e.lease_id WHERE a.job_id = j.id),
                        (SELECT COUNT(*) FROM checkpoints c WHERE c.job_id = j.id)
                 FROM jobs j WHERE id = ?1",
                [job],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )?)
        })
        .unwrap()
}

/// A rogue worker's two finished jobs and the one it holds are queued again from scratch with
/// their epochs gone; an honest worker's job is untouched; the sweep is running again; the names
/// of workers that made no attempt are refused; and the requeued jobs train again to done.
#[test]
fn invalidating_a_worker_requeues_what_it_produced_and_nothing_else() {
    let mut store = Store::in_memory().unwrap();
    let sweep = submit_text(&mut store, FOUR);
    let rogue = store
        .write(|tx| register_worker(tx, "rogue", "cpu", 4, 1_000))
        .unwrap();
    let honest = store
        .write(|tx| register_worker(tx, "honest", "cpu", 4, 1_000))
        .unwrap();
    let epochs: Vec<_> = (1..=3).map(metrics).collect();
    let by_rogue = store.write(|tx| lease_jobs(tx, &rogue, 3, 2_000)).unwrap();
    let by_honest = store.write(|tx| lease_jobs(tx, &honest, 1, 2_000)).unwrap();
    for g in &by_rogue[..2] {
        store
            .write(|tx| complete(tx, &g.lease_id, &rogue, &epochs, &result(0.999), 2_100))
            .unwrap();
    }
    store
        .write(|tx| report_epoch(tx, &by_rogue[2].lease_id, &rogue, &epochs[..1], None, 2_100))
        .unwrap();
    store
        .write(|tx| {
            complete(
                tx,
                &by_honest[0].lease_id,
                &honest,
                &epochs,
                &result(0.7),
                2_100,
            )
        })
        .unwrap();
    assert_eq!(
        store.read(|tx| sweep_counts(tx, &sweep.id)).unwrap().done,
        3
    );

    let name = jetsweep_proto::worker_id::worker_name(&rogue).to_string();
    let done = store
        .write(|tx| invalidate_worker(tx, &name, 3_000))
        .unwrap();
    assert_eq!(
        (
            done.attempts,
            done.epochs,
            done.requeued,
            done.sweeps.clone()
        ),
        (3, 7, 3, vec![sweep.id.clone()])
    );
    for g in &by_rogue {
        assert_eq!(
            job_row(&mut store, &g.job.id),
            ("queued".to_string(), false, 0, 0),
            "{}",
            g.job.id
        );
    }
    assert_eq!(
        job_row(&mut store, &by_honest[0].job.id),
        ("done".to_string(), true, 3, 0)
    );
    let counts = store.read(|tx| sweep_counts(tx, &sweep.id)).unwrap();
    assert_eq!((counts.done, counts.queued, counts.leased), (1, 3, 0));
    // The rogue's late report on the lease it held is refused: the lease is gone.
    assert!(
        store
            .write(|tx| complete(
                tx,
                &by_rogue[2].lease_id,
                &rogue,
                &epochs,
                &result(0.999),
                3_100
            ))
            .is_err()
    );
    // Its attempts read `invalidated`; a name that never worked here is NOT_FOUND.
    let outcomes: Vec<String> = store
        .read(|tx| {
            let mut stmt =
                tx.prepare("SELECT DISTINCT outcome FROM attempts WHERE worker_id = ?1")?;
            let rows = stmt.query_map([&rogue], |r| r.get(0))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .unwrap();
    assert_eq!(outcomes, vec!["invalidated".to_string()]);
    assert!(matches!(
        store.write(|tx| invalidate_worker(tx, "nobody-7", 3_000)),
        Err(Error::NotFound(_))
    ));
    // The honest worker trains them again: the sweep ends with its own results.
    assert_eq!(run_all(&mut store, &honest, 4_000), 3);
    let counts = store.read(|tx| sweep_counts(tx, &sweep.id)).unwrap();
    assert_eq!(counts.done, 4);
}

/// `reuse = false`: the same cells as a finished sweep are new jobs of the sweep's own, trained
/// again; and a later sweep that does reuse finds the first sweep's jobs, not the private ones.
#[test]
fn a_sweep_that_reuses_nothing_trains_its_own_jobs() {
    let mut store = Store::in_memory().unwrap();
    let first = submit_text(&mut store, FOUR);
    let w = store
        .write(|tx| register_worker(tx, "w", "cpu", 8, 1_000))
        .unwrap();
    assert_eq!(run_all(&mut store, &w, 2_000), 4);
    let private = submit_text(
        &mut store,
        &FOUR.replace("[defaults]", "reuse = false\n[defaults]"),
    );
    assert_eq!((private.queued, private.done), (4, 0));
    let jobs_of = |store: &mut Store, sweep: &str| -> Vec<String> {
        store
            .read(|tx| {
                let mut stmt = tx.prepare(
                    "SELECT job_id FROM sweep_jobs WHERE sweep_id = ?1 ORDER BY position",
                )?;
                let rows = stmt.query_map([sweep], |r| r.get(0))?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .unwrap()
    };
    let (a, b) = (
        jobs_of(&mut store, &first.id),
        jobs_of(&mut store, &private.id),
    );
    assert!(a.iter().all(|j| !b.contains(j)), "{a:?} {b:?}");
    assert_eq!(run_all(&mut store, &w, 3_000), 4);
    let again = submit_text(&mut store, FOUR);
    assert_eq!(
        again.done, 4,
        "a reusing sweep takes the first sweep's results"
    );
    assert_eq!(jobs_of(&mut store, &again.id), a);
}

/// Weights that do not fit the job (garbage, another model, the wrong epoch) are not kept, and
/// the result they came with is; fitting weights are kept once, however often the same lease
/// completes.
#[test]
fn weights_that_do_not_fit_are_dropped_and_the_result_kept() {
    use jetsweep_proto::weights::ModelWeights;
    let mut store = Store::in_memory().unwrap();
    let sweep = submit_text(&mut store, FOUR);
    let w = store
        .write(|tx| register_worker(tx, "w", "cpu", 4, 1_000))
        .unwrap();
    let grants = store.write(|tx| lease_jobs(tx, &w, 4, 2_000)).unwrap();
    let epochs: Vec<_> = (1..=3).map(metrics).collect();
    let tiny = |model: &str, epoch: u32, tensors: usize| {
        ModelWeights {
            model: model.into(),
            epoch,
            steps: 9,
            tensors: [16, 16, 16, 16, 80, 5][..tensors]
                .iter()
                .map(|n| vec![0.5; *n])
                .collect(),
        }
        .encode()
    };
    // result(..) names epoch 3 as best.
    let sent: [Vec<u8>; 4] = [
        b"not weights".to_vec(),
        tiny("jsc-toy", 3, 6),
        tiny("jsc-tiny", 2, 6),
        tiny("jsc-tiny", 3, 6),
    ];
    for (g, best) in grants.iter().zip(&sent) {
        store
            .write(|tx| {
                complete(tx, &g.lease_id, &w, &epochs, &result(0.7), 2_100)?;
                super::super::models::keep_weights(tx, &g.lease_id, best, &[])?;
                super::super::models::keep_weights(tx, &g.lease_id, best, &[])
            })
            .unwrap();
    }
    assert_eq!(
        store.read(|tx| sweep_counts(tx, &sweep.id)).unwrap().done,
        4
    );
    let kept: Vec<String> = store
        .read(|tx| {
            let mut stmt = tx.prepare("SELECT job_id FROM models")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .unwrap();
    assert_eq!(kept, vec![grants[3].job.id.clone()]);
}
