//! Leasing: reports extend leases, expiry, heartbeats, fencing by worker, unreadable rows, packs.

use super::*;

#[test]
fn reports_extend_the_lease_and_complete_is_idempotent() {
    let (mut store, sweep, w1, _) = setup();
    let grant = store
        .write(|tx| lease_jobs(tx, &w1, 1, 2_000))
        .unwrap()
        .remove(0);
    let ack = store
        .write(|tx| {
            report_epoch(
                tx,
                &grant.lease_id,
                &holder(&grant),
                &[metrics(1)],
                None,
                9_000,
            )
        })
        .unwrap();
    assert_eq!(
        ack,
        ReportAck {
            cancel: false,
            expires_at: 19_000
        }
    );
    store
        .write(|tx| {
            complete(
                tx,
                &grant.lease_id,
                &holder(&grant),
                &[],
                &result(0.7),
                15_000,
            )
        })
        .unwrap();
    store
        .write(|tx| {
            complete(
                tx,
                &grant.lease_id,
                &holder(&grant),
                &[],
                &result(0.9),
                16_000,
            )
        })
        .unwrap();
    let job = store.read(|tx| get_job(tx, &grant.job.id)).unwrap();
    assert_eq!(
        job.state,
        JobState::Done {
            result: result(0.7),
            summary: None
        },
        "the second completion changed nothing"
    );
    assert_eq!(job.epochs_done, 1);
    assert_eq!(
        store.read(|tx| epochs_of(tx, &grant.lease_id)).unwrap(),
        vec![metrics(1)]
    );
    assert_eq!(
        store.read(|tx| sweep_counts(tx, &sweep.id)).unwrap().done,
        1
    );
}

#[test]
fn an_expired_lease_is_requeued_and_its_late_reports_are_refused() {
    let (mut store, _, w1, w2) = setup();
    let old = store
        .write(|tx| lease_jobs(tx, &w1, 6, 2_000))
        .unwrap()
        .remove(0);
    // w1 goes silent; after the lease timeout w2 gets the job as attempt 2.
    let new = store
        .write(|tx| lease_jobs(tx, &w2, 1, 12_001))
        .unwrap()
        .remove(0);
    assert_eq!((new.job.id.as_str(), new.attempt), (old.job.id.as_str(), 2));
    for refused in [
        store.write(|tx| {
            report_epoch(
                tx,
                &old.lease_id,
                &holder(&old),
                &[metrics(1)],
                None,
                12_002,
            )
            .map(|_| ())
        }),
        store.write(|tx| complete(tx, &old.lease_id, &holder(&old), &[], &result(0.1), 12_002)),
        store.write(|tx| fail(tx, &old.lease_id, &holder(&old), "late", true, 12_002).map(|_| ())),
    ] {
        assert!(
            matches!(refused, Err(Error::StaleLease { .. })),
            "{refused:?}"
        );
    }
    let stale = store
        .write(|tx| heartbeat(tx, &w1, std::slice::from_ref(&old.lease_id), false, 12_003))
        .unwrap();
    assert_eq!(stale, vec![old.lease_id.clone()]);
    store
        .write(|tx| complete(tx, &new.lease_id, &holder(&new), &[], &result(0.8), 13_000))
        .unwrap();
    // The old lease still cannot write, even after the job is done.
    assert!(
        store
            .write(|tx| complete(tx, &old.lease_id, &holder(&old), &[], &result(0.1), 13_001))
            .is_err()
    );
    assert_eq!(
        store.read(|tx| get_job(tx, &new.job.id)).unwrap().state,
        JobState::Done {
            result: result(0.8),
            summary: None
        }
    );
}

#[test]
fn heartbeats_keep_a_lease_alive() {
    let (mut store, _, w1, w2) = setup();
    let grants = store.write(|tx| lease_jobs(tx, &w1, 6, 2_000)).unwrap();
    let leases: Vec<String> = grants.iter().map(|g| g.lease_id.clone()).collect();
    assert!(
        store
            .write(|tx| heartbeat(tx, &w1, &leases, false, 10_000))
            .unwrap()
            .is_empty()
    );
    let grant = &grants[0];
    // Past the original expiry (12,000) but within the extended one (20,000): nothing to take.
    assert!(
        store
            .write(|tx| lease_jobs(tx, &w2, 6, 15_000))
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .write(|tx| report_epoch(
                tx,
                &grant.lease_id,
                &holder(grant),
                &[metrics(1)],
                None,
                15_000
            ))
            .is_ok()
    );
}

/// A lease answers only to the worker it was granted to: another worker's report, completion,
/// failure or heartbeat on it is refused and changes nothing; the holder carries on.
#[test]
fn a_lease_answers_only_to_its_own_worker() {
    let (mut store, _, w1, w2) = setup();
    let g = store
        .write(|tx| lease_jobs(tx, &w1, 1, 2_000))
        .unwrap()
        .remove(0);
    for refused in [
        store
            .write(|tx| report_epoch(tx, &g.lease_id, &w2, &[metrics(1)], None, 2_100).map(|_| ())),
        store.write(|tx| complete(tx, &g.lease_id, &w2, &[], &result(0.99), 2_100)),
        store.write(|tx| fail(tx, &g.lease_id, &w2, "mine now", true, 2_100).map(|_| ())),
    ] {
        assert!(
            matches!(refused, Err(Error::NotYourLease { .. })),
            "{refused:?}"
        );
    }
    let stale = store
        .write(|tx| heartbeat(tx, &w2, std::slice::from_ref(&g.lease_id), false, 2_200))
        .unwrap();
    assert_eq!(stale, vec![g.lease_id.clone()], "not w2's to extend");
    store
        .write(|tx| complete(tx, &g.lease_id, &w1, &[metrics(3)], &result(0.7), 2_300))
        .unwrap();
    // Once done, the other worker still cannot pass the completion off as its own.
    assert!(matches!(
        store.write(|tx| complete(tx, &g.lease_id, &w2, &[], &result(0.99), 2_400)),
        Err(Error::NotYourLease { .. })
    ));
    assert_eq!(
        store.read(|tx| get_job(tx, &g.job.id)).unwrap().state,
        JobState::Done {
            result: result(0.7),
            summary: None
        }
    );
}

/// A queued job whose stored row cannot be read back fails alone, saying why; leasing hands out
/// the others as if it were not there.
#[test]
fn an_unreadable_queued_job_fails_alone_and_the_queue_moves_on() {
    let (mut store, sweep, w1, _) = setup();
    let first = store.read(|tx| list_jobs(tx, &sweep.id, 0, 1)).unwrap()[0]
        .id
        .clone();
    store
        .write(|tx| {
            tx.execute("UPDATE jobs SET model = 'resnet50' WHERE id = ?1", [&first])?;
            Ok(())
        })
        .unwrap();
    let grants = store.write(|tx| lease_jobs(tx, &w1, 10, 2_000)).unwrap();
    assert_eq!(grants.len(), 5, "the five readable jobs are leased");
    assert!(grants.iter().all(|g| g.job.id != first));
    let counts = store.read(|tx| sweep_counts(tx, &sweep.id)).unwrap();
    assert_eq!((counts.failed, counts.leased), (1, 5));
    let error: String = store
        .read(|tx| {
            Ok(
                tx.query_row("SELECT error FROM jobs WHERE id = ?1", [&first], |r| {
                    r.get(0)
                })?,
            )
        })
        .unwrap();
    assert!(
        error.contains("cannot be read") && error.contains("resnet50"),
        "{error}"
    );
}

#[test]
/// A worker that packs gets, per slot, the oldest queued job and the queued first attempts that
/// train with it (same model, optimizer, batch size, epochs, dataset), each with its own lease; a
/// job that may resume from saved state comes alone; a worker that does not pack gets one per slot.
fn a_pack_is_the_oldest_job_and_the_queued_jobs_that_train_with_it() {
    let (mut store, _, w1, w2) = setup();
    let packed = |g: &[LeaseGrant]| {
        g.iter()
            .map(|g| (g.job.trial.batch_size, g.job.trial.seed))
            .collect::<Vec<_>>()
    };
    let first = store
        .write(|tx| lease_for_request(tx, &w1, "r1", Ask { slots: 1, pack: 8 }, 2_000))
        .unwrap();
    assert_eq!(first.len(), 1, "one slot, one pack");
    let first = first.into_iter().next().unwrap();
    assert_eq!(first.len(), 3, "{:?}", packed(&first));
    let batch = first[0].job.trial.batch_size;
    assert!(
        first
            .iter()
            .all(|g| g.job.trial.packs_with(&first[0].job.trial))
    );
    let mut seeds: Vec<u64> = first.iter().map(|g| g.job.trial.seed).collect();
    seeds.sort();
    assert_eq!(seeds, [0, 1, 2]);
    let leases: std::collections::HashSet<&str> =
        first.iter().map(|g| g.lease_id.as_str()).collect();
    assert_eq!(leases.len(), 3, "one lease per job");
    // A retry of the request (its reply was lost) gets the same pack, as one pack.
    let retried = store
        .write(|tx| lease_for_request(tx, &w1, "r1", Ask { slots: 1, pack: 8 }, 2_100))
        .unwrap();
    assert_eq!(retried.len(), 1);
    assert_eq!(
        retried[0].iter().map(|g| &g.lease_id).collect::<Vec<_>>(),
        first.iter().map(|g| &g.lease_id).collect::<Vec<_>>()
    );

    // A pack of two leaves the third compatible job for the next slot; a retry gets both packs
    // back as they were granted.
    let ask = Ask { slots: 2, pack: 2 };
    let second = store
        .write(|tx| lease_for_request(tx, &w2, "r2", ask, 2_000))
        .unwrap();
    assert_eq!(
        second.iter().map(Vec::len).collect::<Vec<_>>(),
        [2, 1],
        "two slots: a pack of two, then the one left"
    );
    assert!(
        second
            .iter()
            .flatten()
            .all(|g| g.job.trial.batch_size != batch)
    );
    assert_eq!(
        second[0][0].job.trial.batch_size,
        second[0][1].job.trial.batch_size
    );
    let again = store
        .write(|tx| lease_for_request(tx, &w2, "r2", ask, 2_100))
        .unwrap();
    let ids = |packs: &[Pack]| -> Vec<Vec<String>> {
        packs
            .iter()
            .map(|p| p.iter().map(|g| g.lease_id.clone()).collect())
            .collect()
    };
    assert_eq!(ids(&again), ids(&second));

    // Each job of a pack completes on its own lease.
    for g in &first {
        store
            .write(|tx| complete(tx, &g.lease_id, &w1, &[metrics(3)], &result(0.7), 3_000))
            .unwrap();
    }
    // w2 goes silent: its jobs come back as second attempts, which may resume, so one at a time.
    let again = store
        .write(|tx| {
            crate::jobs::lease::lease_jobs_for(tx, &w1, Ask { slots: 1, pack: 8 }, None, 13_000)
        })
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].len(), 1);
    assert_eq!(again[0][0].attempt, 2);
    let one_each = store
        .write(|tx| {
            crate::jobs::lease::lease_jobs_for(tx, &w1, Ask { slots: 2, pack: 1 }, None, 13_000)
        })
        .unwrap();
    assert_eq!(one_each.iter().map(Vec::len).collect::<Vec<_>>(), [1, 1]);
}

#[test]
/// A worker asking for the most of everything gets what is queued, within the bounds.
fn an_enormous_pack_request_is_bounded() {
    let (mut store, _, w1, _) = setup();
    let all = store
        .write(|tx| {
            crate::jobs::lease::lease_jobs_for(
                tx,
                &w1,
                Ask {
                    slots: u32::MAX,
                    pack: u32::MAX,
                },
                None,
                2_000,
            )
        })
        .unwrap();
    assert_eq!(all.iter().flatten().count(), 6, "every queued job, once");
    assert_eq!(
        all.iter().map(Vec::len).collect::<Vec<_>>(),
        [3, 3],
        "a pack per batch size"
    );
}
