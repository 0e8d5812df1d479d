//! Cancelling: queued jobs at once, running ones at their report, shared jobs, a sweep's own
//! history, finished sweeps.

use super::*;

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
        .write(|tx| {
            heartbeat(
                tx,
                &w1,
                std::slice::from_ref(&grants[1].lease_id),
                false,
                3_600,
            )
        })
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
