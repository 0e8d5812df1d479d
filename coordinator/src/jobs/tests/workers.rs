//! Workers and datasets: gone workers forgotten, datasets in use.

use super::*;

#[test]
fn gone_workers_without_leases_are_forgotten_and_names_are_never_given_twice() {
    let (mut store, _, w1, w2) = setup();
    assert_eq!(
        (
            jetsweep_proto::worker_id::worker_name(&w1),
            jetsweep_proto::worker_id::worker_name(&w2)
        ),
        ("alpha-1", "beta-2")
    );
    // w1 holds a lease (its heartbeats stopped long ago, but the lease is the expiry's business).
    store.write(|tx| lease_jobs(tx, &w1, 1, 1_000)).unwrap();
    assert_eq!(
        store.write(|tx| forget_workers(tx, 500)).unwrap(),
        0,
        "seen since"
    );
    assert_eq!(store.write(|tx| forget_workers(tx, 5_000)).unwrap(), 1);
    let left: Vec<String> = store
        .read(|tx| Ok(list_workers(tx)?.into_iter().map(|(w, _)| w.id).collect()))
        .unwrap();
    assert_eq!(left, vec![w1.clone()], "the lease holder stays");
    // A forgotten worker that comes back is told to register again.
    assert!(matches!(
        store.write(|tx| heartbeat(tx, &w2, &[], false, 6_000)),
        Err(Error::NotFound(_))
    ));
    let again = store
        .write(|tx| register_worker(tx, "beta", "cpu", 2, 6_000))
        .unwrap();
    assert_eq!(jetsweep_proto::worker_id::worker_name(&again), "beta-3");
}

#[test]
fn a_dataset_is_in_use_while_a_job_of_it_is_queued_or_running() {
    let (mut store, _, w1, _) = setup();
    let in_use = |store: &mut Store| store.read(datasets_in_use).unwrap();
    assert_eq!(in_use(&mut store), ["d5".to_string()].into());
    let grants = store.write(|tx| lease_jobs(tx, &w1, 64, 2_000)).unwrap();
    assert_eq!(in_use(&mut store), ["d5".to_string()].into(), "running");
    for g in &grants {
        store
            .write(|tx| complete(tx, &g.lease_id, &w1, &[metrics(3)], &result(0.5), 2_100))
            .unwrap();
    }
    assert!(in_use(&mut store).is_empty(), "every job done");
}

#[test]
fn a_worker_that_says_goodbye_is_left_not_gone_until_it_is_heard_from_again() {
    let (mut store, _, w1, w2) = setup();
    let presence = |store: &mut Store, id: &str, now| {
        store
            .read(|tx| {
                Ok(list_workers(tx)?
                    .into_iter()
                    .find(|(w, _)| w.id == id)
                    .unwrap()
                    .0)
            })
            .unwrap()
            .presence(now)
    };
    let long_after = 1_000 + jetsweep_proto::limits::GONE_AFTER.as_millis() as i64 + 1;
    store
        .write(|tx| heartbeat(tx, &w1, &[], true, 1_000))
        .unwrap();
    store
        .write(|tx| heartbeat(tx, &w2, &[], false, 1_000))
        .unwrap();
    assert_eq!(presence(&mut store, &w1, 1_500), Presence::Left);
    assert_eq!(presence(&mut store, &w2, 1_500), Presence::Alive);
    assert_eq!(
        presence(&mut store, &w1, long_after),
        Presence::Left,
        "a goodbye is not a crash"
    );
    assert_eq!(
        presence(&mut store, &w2, long_after),
        Presence::Gone,
        "silence is"
    );
    // Heard from after its goodbye (it went on after all): alive again.
    store
        .write(|tx| heartbeat(tx, &w1, &[], false, 2_000))
        .unwrap();
    assert_eq!(presence(&mut store, &w1, 2_500), Presence::Alive);
}
