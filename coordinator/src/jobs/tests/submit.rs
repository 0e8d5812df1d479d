//! Submitting: every cell queued, resubmission reusing done cells, the state file kept.

use super::*;

#[test]
fn submit_queues_every_cell_and_leases_hand_each_out_once() {
    let (mut store, sweep, w1, w2) = setup();
    assert_eq!(
        (sweep.total, sweep.queued, sweep.id.as_str()),
        (6, 6, "lab1-batch-size-1")
    );
    let a = store.write(|tx| lease_jobs(tx, &w1, 4, 2_000)).unwrap();
    let b = store.write(|tx| lease_jobs(tx, &w2, 4, 2_000)).unwrap();
    let c = store.write(|tx| lease_jobs(tx, &w2, 4, 2_000)).unwrap();
    assert_eq!((a.len(), b.len(), c.len()), (4, 2, 0));
    let mut jobs: Vec<&str> = a.iter().chain(&b).map(|g| g.job.id.as_str()).collect();
    jobs.sort();
    jobs.dedup();
    assert_eq!(jobs.len(), 6, "no job leased twice");
    assert!(a.iter().all(|g| g.attempt == 1
        && g.expires_at == 12_000
        && g.lease_id.ends_with(&format!(".{}.1", g.job.id))
        && job_of_lease(&g.lease_id) == g.job.id));
    // Lease ids sort in the order they were granted (the store's lease indexes grow at one end).
    let ids: Vec<&str> = a.iter().chain(&b).map(|g| g.lease_id.as_str()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    // Ids of the older form name their job too.
    assert_eq!(job_of_lease("ab12.3"), "ab12");
    // Grid order: seeds of one point are adjacent.
    assert_eq!(
        (
            a[0].job.trial.batch_size,
            a[0].job.trial.seed,
            a[3].job.trial.batch_size
        ),
        (64, 0, 128)
    );
}

#[test]
fn resubmitting_reuses_done_cells_and_requeues_failed_ones() {
    let (mut store, _, w1, _) = setup();
    let grants = store.write(|tx| lease_jobs(tx, &w1, 6, 2_000)).unwrap();
    for g in &grants[..5] {
        store
            .write(|tx| complete(tx, &g.lease_id, &holder(g), &[], &result(0.7), 3_000))
            .unwrap();
    }
    store
        .write(|tx| {
            fail(
                tx,
                &grants[5].lease_id,
                &holder(&grants[5]),
                "boom",
                true,
                3_000,
            )
        })
        .unwrap();
    store
        .write(|tx| {
            lease_jobs(tx, &w1, 1, 3_500)
                .map(|g| fail(tx, &g[0].lease_id, &holder(&g[0]), "boom", true, 3_600))
        })
        .unwrap()
        .unwrap();
    let spec = SweepSpec::parse(SWEEP).unwrap();
    let again = store
        .write(|tx| submit(tx, &spec, SWEEP, &dataset(), 4_000))
        .unwrap();
    assert_eq!(
        (
            again.id.as_str(),
            again.total,
            again.reused,
            again.done,
            again.queued
        ),
        ("lab1-batch-size-2", 6, 5, 5, 1)
    );
    let retried = store.write(|tx| lease_jobs(tx, &w1, 6, 5_000)).unwrap();
    assert_eq!(retried.len(), 1);
    // Attempt numbers keep counting (two failed attempts before), so no lease id is ever reused.
    assert_eq!(
        (retried[0].job.id.as_str(), retried[0].attempt),
        (grants[5].job.id.as_str(), 3)
    );
    assert_eq!(retried[0].job.max_attempts, 4);
    // A different dataset is a different set of jobs.
    let other = DatasetRef {
        sha256: "other".into(),
        ..dataset()
    };
    let fresh = store
        .write(|tx| submit(tx, &spec, SWEEP, &other, 6_000))
        .unwrap();
    assert_eq!((fresh.reused, fresh.queued), (0, 6));
}

#[test]
fn state_survives_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let spec = SweepSpec::parse(SWEEP).unwrap();
    let (lease, sweep, w) = {
        let mut store = Store::open(&path).unwrap();
        let sweep = store
            .write(|tx| submit(tx, &spec, SWEEP, &dataset(), 1_000))
            .unwrap();
        let w = store
            .write(|tx| register_worker(tx, "alpha", "cpu", 1, 1_000))
            .unwrap();
        let g = store
            .write(|tx| lease_jobs(tx, &w, 1, 2_000))
            .unwrap()
            .remove(0);
        store
            .write(|tx| complete(tx, &g.lease_id, &holder(&g), &[], &result(0.75), 3_000))
            .unwrap();
        (g.lease_id, sweep.id, w)
    };
    let mut store = Store::open(&path).unwrap();
    let counts = store.read(|tx| sweep_counts(tx, &sweep)).unwrap();
    assert_eq!((counts.total, counts.done, counts.queued), (6, 1, 5));
    store
        .write(|tx| complete(tx, &lease, &w, &[], &result(0.75), 4_000))
        .unwrap();
    assert_eq!(
        store
            .read(|tx| list_jobs(tx, &sweep, 0, 100))
            .unwrap()
            .len(),
        6
    );
    assert!(matches!(
        store.read(|tx| sweep_counts(tx, "nope")),
        Err(Error::NotFound(_))
    ));
}

/// A state name that is not one of the five (written past the schema's check, as a damaged or
/// foreign file might hold) is reported as corruption, never read as some other state.
#[test]
fn an_unknown_state_is_corruption_not_a_default() {
    let (mut store, sweep, _, _) = setup();
    let job = store
        .read(|tx| list_jobs(tx, &sweep.id, 0, 1))
        .unwrap()
        .remove(0);
    store
        .write(|tx| {
            tx.pragma_update(None, "ignore_check_constraints", true)?;
            tx.execute("UPDATE jobs SET state = 'running' WHERE id = ?1", [&job.id])?;
            Ok(())
        })
        .unwrap();
    for err in [
        store.read(|tx| get_job(tx, &job.id)).map(|_| ()),
        store.read(|tx| sweep_counts(tx, &sweep.id)).map(|_| ()),
    ] {
        match err {
            Err(Error::Corrupt(why)) => assert!(why.contains("running"), "{why}"),
            other => panic!("expected corruption, got {other:?}"),
        }
    }
}
