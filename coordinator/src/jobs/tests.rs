//! The lifecycle rules, checked over a real SQLite store with time passed in.

use jetsweep_proto::dataset::ValidationKind;
use jetsweep_proto::metrics::EpochMetrics;

use super::*;
use crate::Error;
use crate::store::Store;
use crate::sweep::SweepSpec;

const SWEEP: &str = r#"
name = "lab1 batch size"
attempts = 2
lease_timeout_s = 10
[defaults]
max_epochs = 3
learning_rate = 1e-3
[grid]
batch_size = [64, 128]
seed = [0, 1, 2]
"#;

fn dataset() -> DatasetRef {
    DatasetRef {
        spec: "synthetic".into(),
        sha256: "d5".into(),
        bytes: 10,
        synthetic: true,
        validation: ValidationKind::TrainAsVal,
    }
}

fn setup() -> (Store, SweepCounts, String, String) {
    let mut store = Store::in_memory().unwrap();
    let spec = SweepSpec::parse(SWEEP).unwrap();
    let sweep = store
        .write(|tx| submit(tx, &spec, SWEEP, &dataset(), 1_000))
        .unwrap();
    let w1 = store
        .write(|tx| register_worker(tx, "alpha", "cpu", 2, 1_000))
        .unwrap();
    let w2 = store
        .write(|tx| register_worker(tx, "beta", "cpu", 2, 1_000))
        .unwrap();
    (store, sweep, w1, w2)
}

fn metrics(epoch: u32) -> EpochMetrics {
    EpochMetrics {
        epoch,
        lr: 1e-3,
        train_loss: 1.0,
        train_acc: 0.5,
        val_loss: 1.0,
        val_acc: 0.5,
        test_loss: 1.0,
        test_acc: 0.5,
        seconds: 0.1,
        samples_per_second: 1e6,
    }
}

/// The worker a grant went to (every report on it must name that worker).
fn holder(g: &LeaseGrant) -> String {
    match &g.job.state {
        JobState::Leased { worker, .. } => worker.clone(),
        other => panic!("not leased: {other:?}"),
    }
}

fn result(acc: f64) -> TrialResult {
    TrialResult {
        params: 117,
        test_acc: acc,
        best_epoch: 3,
        best_test_acc: acc,
    }
}

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
        .write(|tx| heartbeat(tx, &w1, std::slice::from_ref(&old.lease_id), 12_003))
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
            .write(|tx| heartbeat(tx, &w1, &leases, 10_000))
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
fn cancelling_stops_queued_jobs_now_and_leased_ones_at_their_next_report() {
    let (mut store, sweep, w1, _) = setup();
    let grants = store.write(|tx| lease_jobs(tx, &w1, 2, 2_000)).unwrap();
    let counts = store
        .write(|tx| cancel_sweep(tx, &sweep.id, 3_000))
        .unwrap();
    assert_eq!(
        (counts.cancelled, counts.leased, counts.cancel_requested),
        (4, 2, true)
    );
    let ack = store
        .write(|tx| {
            report_epoch(
                tx,
                &grants[0].lease_id,
                &holder(&grants[0]),
                &[metrics(1)],
                None,
                3_500,
            )
        })
        .unwrap();
    assert!(ack.cancel);
    let stale = store
        .write(|tx| heartbeat(tx, &w1, std::slice::from_ref(&grants[1].lease_id), 3_600))
        .unwrap();
    assert_eq!(stale, vec![grants[1].lease_id.clone()]);
    let counts = store.read(|tx| sweep_counts(tx, &sweep.id)).unwrap();
    assert_eq!((counts.cancelled, counts.leased), (6, 0));
    assert!(counts.finished());
    assert!(
        store
            .write(|tx| lease_jobs(tx, &w1, 6, 4_000))
            .unwrap()
            .is_empty()
    );
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
        .write(|tx| heartbeat(tx, &w2, std::slice::from_ref(&g.lease_id), 2_200))
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

/// Cancelling a sweep whose jobs another live sweep shares says so: its own running jobs stop,
/// the shared ones go on (and are counted as kept, not as stopping).
#[test]
fn a_cancel_says_which_jobs_stop_and_which_go_on_for_another_sweep() {
    let (mut store, sweep, w1, _) = setup();
    store.write(|tx| lease_jobs(tx, &w1, 2, 2_000)).unwrap();
    let after = store
        .write(|tx| {
            cancel_sweep(tx, &sweep.id, 3_000)?;
            cancel_effect(tx, &sweep.id)
        })
        .unwrap();
    assert_eq!(after, (2, 0), "both running jobs stop, nothing is shared");
    // A second sweep of the same cells is submitted: the cancelled cells are queued again for it,
    // the running ones are shared, and cancelling the first again stops none of them.
    let spec = SweepSpec::parse(SWEEP).unwrap();
    let again = store
        .write(|tx| submit(tx, &spec, SWEEP, &dataset(), 4_000))
        .unwrap();
    assert_eq!(
        again.queued, 4,
        "the 4 cancelled cells run again for the new sweep"
    );
    let (stopping, kept) = store
        .write(|tx| {
            cancel_sweep(tx, &sweep.id, 5_000)?;
            cancel_effect(tx, &sweep.id)
        })
        .unwrap();
    assert_eq!(
        (stopping, kept),
        (0, 6),
        "the 2 running jobs are the new sweep's too, so they go on, as do the 4 queued again"
    );
}

/// Leases every queued job of the store to `worker` and completes each with all its epochs.
fn run_all(store: &mut Store, worker: &str, now: Millis) -> usize {
    let grants = store.write(|tx| lease_jobs(tx, worker, 64, now)).unwrap();
    for g in &grants {
        store
            .write(|tx| {
                let epochs: Vec<_> = (1..=3).map(metrics).collect();
                complete(tx, &g.lease_id, worker, &epochs, &result(0.7), now + 1)
            })
            .unwrap();
    }
    grants.len()
}

/// The cancelled sweep's jobs run to the end for a later sweep of the same cells; the cancelled
/// sweep still reads as it was left: the result that arrived from its running job kept, every
/// other job cancelled, nothing queued or running, in its counts, its job list and its outcomes.
#[test]
fn a_cancelled_sweep_stays_cancelled_whatever_a_later_sweep_does_with_its_jobs() {
    let (mut store, first, w1, _) = setup();
    let grants = store.write(|tx| lease_jobs(tx, &w1, 2, 2_000)).unwrap();
    store
        .write(|tx| cancel_sweep(tx, &first.id, 3_000))
        .unwrap();
    // One running job finishes before it hears of the cancel; the other stops at its report.
    store
        .write(|tx| complete(tx, &grants[0].lease_id, &w1, &[], &result(0.7), 3_100))
        .unwrap();
    let ack = store
        .write(|tx| report_epoch(tx, &grants[1].lease_id, &w1, &[metrics(1)], None, 3_200))
        .unwrap();
    assert!(ack.cancel);
    let as_left = |store: &mut Store| {
        let c = store.read(|tx| sweep_counts(tx, &first.id)).unwrap();
        (c.done, c.cancelled, c.queued, c.leased, c.cancel_requested)
    };
    assert_eq!(as_left(&mut store), (1, 5, 0, 0, true));

    let spec = SweepSpec::parse(SWEEP).unwrap();
    let second = store
        .write(|tx| submit(tx, &spec, SWEEP, &dataset(), 4_000))
        .unwrap();
    assert_eq!((second.queued, second.reused), (5, 1));
    assert_eq!(
        as_left(&mut store),
        (1, 5, 0, 0, true),
        "while they are queued"
    );
    store.write(|tx| lease_jobs(tx, &w1, 2, 5_000)).unwrap();
    assert_eq!(as_left(&mut store), (1, 5, 0, 0, true), "while they run");
    assert_eq!(run_all(&mut store, &w1, 6_000), 3);
    let second_now = store.read(|tx| sweep_counts(tx, &second.id)).unwrap();
    assert_eq!((second_now.done, second_now.leased), (4, 2));
    assert_eq!(
        as_left(&mut store),
        (1, 5, 0, 0, true),
        "after they finished"
    );

    let (page, _) = store.read(|tx| jobs_page(tx, &first.id, 0, 10)).unwrap();
    let states: Vec<JobStatus> = page.iter().map(|j| j.state.status()).collect();
    assert_eq!(
        states
            .iter()
            .filter(|s| **s == JobStatus::Cancelled)
            .count(),
        5,
        "{states:?}"
    );
    let outcomes = store.read(|tx| sweep_outcomes(tx, &first.id)).unwrap();
    assert_eq!(outcomes.iter().filter(|o| o.done.is_some()).count(), 1);
    assert!(
        matches!(
            store.write(|tx| cancel_sweep(tx, &first.id, 7_000)),
            Err(Error::SweepFinished { .. })
        ),
        "cancelling it again finds nothing to cancel"
    );
}

/// A cancel of a sweep with nothing left to run is refused, naming its counts, and nothing of
/// the sweep changes.
#[test]
fn cancelling_a_finished_sweep_says_so_and_changes_nothing() {
    let (mut store, sweep, w1, _) = setup();
    assert_eq!(run_all(&mut store, &w1, 2_000), 6);
    let before = store.read(|tx| sweep_counts(tx, &sweep.id)).unwrap();
    let err = store
        .write(|tx| cancel_sweep(tx, &sweep.id, 3_000))
        .unwrap_err();
    assert!(matches!(err, Error::SweepFinished { done: 6, .. }), "{err}");
    assert!(
        err.to_string().contains(&sweep.id) && err.to_string().contains("nothing to cancel"),
        "{err}"
    );
    let after = store.read(|tx| sweep_counts(tx, &sweep.id)).unwrap();
    assert_eq!(after, before);
    assert!(!after.cancel_requested);
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
        store.write(|tx| heartbeat(tx, &w2, &[], 6_000)),
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
        .write(|tx| lease::lease_jobs_for(tx, &w1, Ask { slots: 1, pack: 8 }, None, 13_000))
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].len(), 1);
    assert_eq!(again[0][0].attempt, 2);
    let one_each = store
        .write(|tx| lease::lease_jobs_for(tx, &w1, Ask { slots: 2, pack: 1 }, None, 13_000))
        .unwrap();
    assert_eq!(one_each.iter().map(Vec::len).collect::<Vec<_>>(), [1, 1]);
}

#[test]
/// A worker asking for the most of everything gets what is queued, within the bounds.
fn an_enormous_pack_request_is_bounded() {
    let (mut store, _, w1, _) = setup();
    let all = store
        .write(|tx| {
            lease::lease_jobs_for(
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
