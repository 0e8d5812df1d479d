//! How attempts end: failures and their retries, hand-backs, resuming from a checkpoint, the
//! summary of a resumed job.

use super::*;

#[test]
fn failures_retry_until_the_attempt_limit_then_keep_the_reason() {
    let (mut store, _, w1, _) = setup();
    let first = store
        .write(|tx| lease_jobs(tx, &w1, 1, 2_000))
        .unwrap()
        .remove(0);
    assert!(
        store
            .write(|tx| fail(
                tx,
                &first.lease_id,
                &holder(&first),
                "out of memory",
                true,
                3_000
            ))
            .unwrap()
    );
    // Requeued at the back of the queue: take everything to find it again.
    let again = store.write(|tx| lease_jobs(tx, &w1, 6, 4_000)).unwrap();
    let second = again.iter().find(|g| g.job.id == first.job.id).unwrap();
    assert_eq!(second.attempt, 2);
    assert!(
        !store
            .write(|tx| fail(
                tx,
                &second.lease_id,
                &holder(second),
                "out of memory again",
                true,
                5_000
            ))
            .unwrap()
    );
    match store.read(|tx| get_job(tx, &first.job.id)).unwrap().state {
        JobState::Failed { error } => assert_eq!(error, "attempt 2 of 2: out of memory again"),
        other => panic!("{other:?}"),
    }
    // A worker's death is not the job's failure: after one failure of its own, a job whose lease
    // expires is queued again and keeps its last try...
    let other = again.iter().find(|g| g.job.id != first.job.id).unwrap();
    assert!(
        store
            .write(|tx| fail(tx, &other.lease_id, &holder(other), "x", true, 5_000))
            .unwrap()
    );
    let retry = store
        .write(|tx| lease_jobs(tx, &w1, 1, 6_000))
        .unwrap()
        .remove(0);
    assert_eq!(retry.job.id, other.job.id);
    // (The other jobs leased at 4,000 expire with it.)
    store.write(|tx| expire_leases(tx, 16_001)).unwrap();
    let mut now = 17_000;
    let lease = |store: &mut Store, now: i64| {
        store
            .write(|tx| lease_jobs(tx, &w1, 6, now))
            .unwrap()
            .into_iter()
            .find(|g| g.job.id == other.job.id)
            .expect("queued again")
    };
    let last_try = lease(&mut store, now);
    assert!(
        !store
            .write(|tx| fail(
                tx,
                &last_try.lease_id,
                &holder(&last_try),
                "y",
                true,
                now + 1
            ))
            .unwrap(),
        "its second failure of its own is its last"
    );
    match store.read(|tx| get_job(tx, &other.job.id)).unwrap().state {
        JobState::Failed { error } => assert_eq!(error, "attempt 2 of 2: y"),
        other => panic!("{other:?}"),
    }
    // ...and a job that loses its worker again and again stops at MAX_LOST, saying why.
    let spec = SweepSpec::parse(&SWEEP.replace("seed = [0, 1, 2]", "seed = [9]")).unwrap();
    let lonely = store
        .write(|tx| submit(tx, &spec, SWEEP, &dataset(), now))
        .unwrap();
    let job = store.read(|tx| list_jobs(tx, &lonely.id, 0, 1)).unwrap()[0]
        .id
        .clone();
    for lost in 1..=MAX_LOST {
        now += 20_000;
        let grant = store
            .write(|tx| lease_jobs(tx, &w1, 8, now))
            .unwrap()
            .into_iter()
            .find(|g| g.job.id == job)
            .unwrap_or_else(|| panic!("leased again after {} losses", lost - 1));
        assert_eq!(grant.attempt, lost);
        now += 11_000;
        store.write(|tx| expire_leases(tx, now)).unwrap();
    }
    match store.read(|tx| get_job(tx, &job)).unwrap().state {
        JobState::Failed { error } => assert!(
            error.contains("expired") && error.contains(&format!("lost {MAX_LOST} of {MAX_LOST}")),
            "{error}"
        ),
        other => panic!("{other:?}"),
    }
}

/// A job handed back by a stopping worker is queued again at once, its attempts unspent: after
/// as many hand-backs as the job has attempts, it still runs.
#[test]
fn a_handed_back_job_is_queued_again_without_spending_an_attempt() {
    let (mut store, _, w1, _) = setup();
    let mut grant = store
        .write(|tx| lease_jobs(tx, &w1, 1, 2_000))
        .unwrap()
        .remove(0);
    for round in 0..3 {
        let now = 3_000 + round * 1_000;
        assert!(
            store
                .write(|tx| release(tx, &grant.lease_id, &w1, "stopping", now))
                .unwrap()
        );
        assert_eq!(
            store.read(|tx| get_job(tx, &grant.job.id)).unwrap().state,
            JobState::Queued
        );
        grant = store
            .write(|tx| lease_jobs(tx, &w1, 6, now + 1))
            .unwrap()
            .into_iter()
            .find(|g| g.job.id == grant.job.id)
            .unwrap();
    }
    // Two failures of its own are still allowed (SWEEP gives 2 attempts).
    assert!(
        store
            .write(|tx| fail(tx, &grant.lease_id, &w1, "x", true, 9_000))
            .unwrap()
    );
}

#[test]
fn a_requeued_job_resumes_from_its_newest_checkpoint_and_forgets_it_when_done() {
    let (mut store, _, w1, w2) = setup();
    let first = store
        .write(|tx| lease_jobs(tx, &w1, 1, 2_000))
        .unwrap()
        .remove(0);
    assert_eq!(first.resume_epoch, None);
    let state = |epoch: u32| Checkpoint {
        epoch,
        state: vec![epoch as u8; 100],
    };
    let report = |store: &mut Store, epoch: u32, ck: Option<Checkpoint>| {
        store.write(|tx| {
            report_epoch(
                tx,
                &first.lease_id,
                &w1,
                &[metrics(epoch)],
                ck.as_ref(),
                2_100,
            )
        })
    };
    report(&mut store, 1, Some(state(1))).unwrap();
    report(&mut store, 2, Some(state(2))).unwrap();
    // Refused, naming the field: state not after the report's last epoch; state after the trial's
    // last epoch (3); empty or oversized state. Nothing of a refused report is kept.
    for (epoch, ck) in [
        (2, state(1)),
        (3, state(3)),
        (
            2,
            Checkpoint {
                epoch: 2,
                state: vec![],
            },
        ),
        (
            2,
            Checkpoint {
                epoch: 2,
                state: vec![0; jetsweep_proto::limits::MAX_CHECKPOINT_BYTES + 1],
            },
        ),
    ] {
        let err = report(&mut store, epoch, Some(ck)).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidRequest(m) if m.starts_with("checkpoint.")),
            "{err}"
        );
    }

    // The worker dies; the job goes to another worker, which resumes after epoch 2.
    assert_eq!(store.write(|tx| expire_leases(tx, 20_000)).unwrap(), 1);
    // (It went to the back of the queue: the others come first.)
    let second = store
        .write(|tx| lease_jobs(tx, &w2, 64, 20_001))
        .unwrap()
        .into_iter()
        .find(|g| g.job.id == first.job.id)
        .expect("the requeued job is granted");
    assert_eq!(second.attempt, 2);
    assert_eq!(second.resume_epoch, Some(2));
    let job = store.read(|tx| get_job(tx, &second.job.id)).unwrap();
    assert_eq!((job.epochs_done, job.latest.map(|m| m.epoch)), (2, Some(2)));
    let fetched = store
        .write(|tx| fetch_checkpoint(tx, &second.lease_id, &w2, 20_002))
        .unwrap();
    assert_eq!(fetched, state(2));
    // Only the lease's holder may read it, and only while the lease is current.
    assert!(matches!(
        store.write(|tx| fetch_checkpoint(tx, &second.lease_id, &w1, 20_002)),
        Err(Error::NotYourLease { .. })
    ));
    assert!(matches!(
        store.write(|tx| fetch_checkpoint(tx, &first.lease_id, &w1, 20_002)),
        Err(Error::StaleLease { .. })
    ));

    store
        .write(|tx| {
            complete(
                tx,
                &second.lease_id,
                &w2,
                &[metrics(3)],
                &result(0.7),
                20_100,
            )
        })
        .unwrap();
    let left: i64 = store
        .read(|tx| Ok(tx.query_row("SELECT COUNT(*) FROM checkpoints", [], |r| r.get(0))?))
        .unwrap();
    assert_eq!(left, 0, "a finished job's checkpoint is dropped");
}

/// A job's epoch summary is read off every epoch it reported, each as its latest attempt reported
/// it: attempt 1 reports epochs 1-2 and dies, attempt 2 reports epoch 2 again and the rest.
#[test]
fn the_summary_of_a_resumed_job_counts_each_epoch_once_from_its_latest_attempt() {
    let (mut store, _, w1, w2) = setup();
    let first = store
        .write(|tx| lease_jobs(tx, &w1, 1, 2_000))
        .unwrap()
        .remove(0);
    let epoch = |n: u32, val_loss: f64, seconds: f64| EpochMetrics {
        val_loss,
        seconds,
        train_loss: 0.1 * f64::from(n),
        ..metrics(n)
    };
    store
        .write(|tx| {
            report_epoch(
                tx,
                &first.lease_id,
                &w1,
                &[epoch(1, 0.9, 1.0), epoch(2, 0.8, 2.0)],
                None,
                3_000,
            )
        })
        .unwrap();
    store.write(|tx| expire_leases(tx, 20_000)).unwrap();
    let second = store
        .write(|tx| lease_jobs(tx, &w2, 6, 20_000))
        .unwrap()
        .into_iter()
        .find(|g| g.job.id == first.job.id)
        .expect("the job was queued again");
    assert_eq!(second.attempt, 2);
    store
        .write(|tx| {
            complete(
                tx,
                &second.lease_id,
                &w2,
                &[epoch(2, 0.5, 4.0), epoch(3, 0.6, 8.0)],
                &TrialResult {
                    best_epoch: 2,
                    ..result(0.7)
                },
                21_000,
            )
        })
        .unwrap();
    let JobState::Done { summary, .. } = store.read(|tx| get_job(tx, &first.job.id)).unwrap().state
    else {
        panic!("not done")
    };
    let summary = summary.expect("every epoch was reported");
    assert_eq!(
        summary.best_val_loss, 0.5,
        "epoch 2 as attempt 2 reported it"
    );
    assert_eq!(summary.train_seconds, 1.0 + 4.0 + 8.0);
    assert_eq!(summary.samples_per_second, 1e6);
    assert!((summary.final_train_loss - 0.3).abs() < 1e-12);
}
