//! Leases over the wire: a sweep run through it, completions that lease the next pack, stale
//! and foreign leases refused, outages survived, divergence, retried requests.

use super::*;

#[tokio::test]
async fn a_sweep_runs_through_the_wire_and_stale_leases_are_refused() {
    let (mut c, _dir) = start().await;
    let sweep = c.submit(SWEEP).await;
    assert_eq!((sweep.total, sweep.queued), (4, 4));

    let bad = c
        .workers
        .register(pb::RegisterRequest {
            protocol_version: PROTOCOL_VERSION + 1,
            host: "h".into(),
            device: "cpu".into(),
            slots: 1,
        })
        .await;
    assert_eq!(bad.unwrap_err().code(), Code::FailedPrecondition);
    let reg = c
        .workers
        .register(pb::RegisterRequest {
            protocol_version: PROTOCOL_VERSION,
            host: "h".into(),
            device: "cpu".into(),
            slots: 4,
        })
        .await
        .unwrap()
        .into_inner();

    let leases = c.lease(&reg.worker_id, 4).await;
    assert_eq!(leases.len(), 4);
    let dataset = leases[0].spec.as_ref().unwrap().dataset.clone().unwrap();
    assert!(dataset.synthetic && dataset.sha256.len() == 64);

    for (i, lease) in leases.iter().enumerate() {
        // Epoch 1 in a report of its own; epoch 2 rides with the completion.
        let ack = c
            .workers
            .report_epoch(pb::ReportEpochRequest {
                worker_id: reg.worker_id.clone(),
                lease_id: lease.lease_id.clone(),
                epochs: vec![epoch(1)],
                checkpoint: None,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(!ack.cancel);
        let result = pb::TrialResult {
            params: 117,
            test_acc: 0.6 + 0.01 * i as f64,
            best_epoch: 2,
            best_test_acc: 0.6 + 0.01 * i as f64,
        };
        let complete = pb::CompleteJobRequest {
            worker_id: reg.worker_id.clone(),
            lease_id: lease.lease_id.clone(),
            result: Some(result),
            // Validation chooses the best point: the later seeds (batch 128) lose less.
            epochs: vec![pb::EpochMetrics {
                val_loss: 0.4 - 0.01 * i as f64,
                ..epoch(2)
            }],
            ..Default::default()
        };
        c.workers.complete_job(complete.clone()).await.unwrap();
        // Completing again with the same lease is harmless.
        c.workers.complete_job(complete).await.unwrap();
    }
    let jobs = c
        .sweeps
        .list_jobs(pb::ListJobsRequest {
            sweep_id: sweep.sweep_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .jobs;
    assert!(jobs.iter().all(|j| j.epochs_done == 2), "{jobs:?}");
    assert!(
        jobs.iter().all(|j| j.summary.is_some()),
        "every epoch was reported: {jobs:?}"
    );
    // A report on a lease that has ended is refused.
    let stale = c
        .workers
        .report_epoch(pb::ReportEpochRequest {
            worker_id: reg.worker_id.clone(),
            lease_id: leases[0].lease_id.clone(),
            epochs: vec![epoch(3)],
            checkpoint: None,
        })
        .await;
    assert_eq!(stale.unwrap_err().code(), Code::FailedPrecondition);

    let done = c
        .sweeps
        .get_sweep(pb::GetSweepRequest {
            sweep_id: sweep.sweep_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .sweep
        .unwrap();
    assert_eq!(done.done, 4);
    let results = c
        .sweeps
        .get_results(pb::GetResultsRequest {
            sweep_id: sweep.sweep_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(results.rows.len(), 2);
    assert_eq!(
        results.rows.iter().map(|r| r.seeds).collect::<Vec<_>>(),
        vec![2, 2]
    );
    assert_eq!(results.best, 1);

    // Resubmitting runs nothing new.
    let again = c.submit(SWEEP).await;
    assert_eq!((again.total, again.reused, again.queued), (4, 4, 0));

    // The dataset a worker would fetch is the one the leases name, verified by its own checksum.
    let mut stream = c
        .workers
        .fetch_dataset(pb::FetchDatasetRequest {
            sha256: dataset.sha256.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.message().await.unwrap() {
        assert_eq!(chunk.offset as usize, bytes.len());
        bytes.extend(chunk.data);
    }
    let prepared = jetsweep_data::cache::decode(&bytes, std::path::Path::new("fetched")).unwrap();
    assert_eq!(prepared.provenance.sha256, dataset.sha256);
    assert_eq!(bytes.len() as u64, dataset.size_bytes);

    // Downloads are bounded: with MAX_DATASET_FETCHES under way (held here as their permits), the
    // next is UNAVAILABLE (a worker retries); when they end it is served.
    let held: Vec<_> = (0..crate::server::MAX_DATASET_FETCHES)
        .map(|_| c.coordinator.dataset_fetch_permit().expect("a free slot"))
        .collect();
    let fetch = pb::FetchDatasetRequest {
        sha256: dataset.sha256.clone(),
    };
    let refused = c.workers.fetch_dataset(fetch.clone()).await.unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::Unavailable,
        "{}",
        refused.message()
    );
    drop(held);
    assert!(c.workers.fetch_dataset(fetch).await.is_ok());
}

/// A worker that completes with `slots` gets its next job in the same call, and walks the whole
/// sweep with one call per job; a completion on a stale lease grants nothing; an empty report is
/// refused.
#[tokio::test]
async fn completing_a_job_leases_the_next_in_the_same_commit() {
    let (mut c, _dir) = start().await;
    let sweep = c.submit(SWEEP).await;
    let worker_id = c
        .workers
        .register(pb::RegisterRequest {
            protocol_version: PROTOCOL_VERSION,
            host: "h".into(),
            device: "cpu".into(),
            slots: 1,
        })
        .await
        .unwrap()
        .into_inner()
        .worker_id;
    let empty = c
        .workers
        .report_epoch(pb::ReportEpochRequest {
            worker_id: worker_id.clone(),
            lease_id: "x.1".into(),
            epochs: vec![],
            checkpoint: None,
        })
        .await
        .unwrap_err();
    assert_eq!(empty.code(), Code::InvalidArgument);
    let mut lease = c.lease(&worker_id, 1).await.remove(0);
    let first = lease.clone();
    let result = pb::TrialResult {
        params: 117,
        test_acc: 0.7,
        best_epoch: 2,
        best_test_acc: 0.7,
    };
    let mut calls = 1;
    loop {
        let next = c
            .workers
            .complete_job(pb::CompleteJobRequest {
                lease_id: lease.lease_id.clone(),
                result: Some(result),
                epochs: vec![epoch(1), epoch(2)],
                slots: 1,
                worker_id: worker_id.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .packs
            .into_iter()
            .flat_map(|p| p.leases)
            .collect::<Vec<_>>();
        calls += 1;
        match next.into_iter().next() {
            Some(l) => lease = l,
            None => break,
        }
    }
    assert_eq!(calls, 5, "one lease and four completions for four jobs");
    let view = c
        .sweeps
        .get_sweep(pb::GetSweepRequest {
            sweep_id: sweep.sweep_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .sweep
        .unwrap();
    assert_eq!((view.done, view.queued, view.leased), (4, 0, 0));
    // The first job's lease has ended: completing on it again is harmless and grants nothing new
    // (the queue is empty); a lease that never existed is refused.
    let again = c
        .workers
        .complete_job(pb::CompleteJobRequest {
            lease_id: first.lease_id.clone(),
            result: Some(result),
            slots: 1,
            worker_id: worker_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(again.packs.is_empty());
    let stale = c
        .workers
        .complete_job(pb::CompleteJobRequest {
            lease_id: format!("{}.9", first.job_id),
            result: Some(result),
            slots: 1,
            worker_id,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::FailedPrecondition);
}

/// A worker that goes silent loses its job when the lease's time has passed on the coordinator's
/// clock, and not before: the job is leased again as attempt 2, the first lease's late report and
/// completion are refused, and the second lease's completion is kept (once). No sleeping: the test
/// moves the clock.
#[tokio::test]
async fn a_stale_lease_is_refused_and_a_second_completion_changes_nothing() {
    let (mut c, _dir) = start().await;
    let sweep_id = c.submit(sweeps::QUICK).await.sweep_id;
    let id = c.register("test", 1).await;
    let lease_one = |c: &mut TestCoordinator, max_jobs| {
        let mut w = c.workers.clone();
        let worker_id = id.clone();
        async move {
            w.lease_jobs(pb::LeaseJobsRequest {
                pack_size: 1,
                worker_id,
                slots: max_jobs,
                request_id: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .packs
            .into_iter()
            .flat_map(|p| p.leases)
            .collect::<Vec<_>>()
        }
    };
    let lease = lease_one(&mut c, 1).await.remove(0);
    // QUICK's lease is 3 s: at 2.9 s it still holds.
    c.advance(Duration::from_millis(2_900)).await;
    c.workers
        .heartbeat(pb::HeartbeatRequest {
            worker_id: id.clone(),
            lease_ids: vec![],
            leaving: false,
        })
        .await
        .unwrap();
    assert!(
        lease_one(&mut c, 8)
            .await
            .iter()
            .all(|l| l.job_id != lease.job_id),
        "the lease is still current"
    );
    // Past it, the job goes back to the queue and is leased again, to a second lease.
    c.advance(Duration::from_millis(200)).await;
    let again = lease_one(&mut c, 8).await;
    let new = again
        .iter()
        .find(|l| l.job_id == lease.job_id)
        .expect("the expired job is leased again");
    assert_eq!(new.attempt, 2);
    assert_eq!(new.sweep_id, sweep_id, "a lease names its sweep");
    let result = |acc: f64| {
        Some(pb::TrialResult {
            params: 117,
            test_acc: acc,
            best_epoch: 1,
            best_test_acc: acc,
        })
    };
    let late = c
        .workers
        .report_epoch(pb::ReportEpochRequest {
            worker_id: id.clone(),
            lease_id: lease.lease_id.clone(),
            epochs: vec![epoch(1)],
            checkpoint: None,
        })
        .await;
    assert_eq!(late.unwrap_err().code(), Code::FailedPrecondition);
    let late = c
        .workers
        .complete_job(pb::CompleteJobRequest {
            worker_id: id.clone(),
            lease_id: lease.lease_id.clone(),
            result: result(0.1),
            ..Default::default()
        })
        .await;
    assert_eq!(late.unwrap_err().code(), Code::FailedPrecondition);
    for acc in [0.7, 0.9] {
        c.workers
            .complete_job(pb::CompleteJobRequest {
                worker_id: id.clone(),
                lease_id: new.lease_id.clone(),
                result: result(acc),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let job = c
        .sweeps
        .list_jobs(pb::ListJobsRequest {
            sweep_id,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .jobs
        .into_iter()
        .find(|j| j.job_id == lease.job_id)
        .unwrap();
    assert_eq!(
        (job.state, job.result.unwrap().test_acc, job.attempts),
        (pb::JobState::Done as i32, 0.7, 2)
    );
}

/// A coordinator that was away longer than a lease does not expire the leases its workers hold
/// the moment it starts again: they get one lease timeout to report, and a worker that does keeps
/// its job (no attempt spent); one that stays silent loses it after that.
#[tokio::test]
async fn leases_survive_an_outage_longer_than_themselves() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = TestCoordinator::start(dir.path()).await;
    c.submit(SWEEP).await;
    let id = c.register("h", 2).await;
    let leases = c.lease(&id, 2).await;
    assert_eq!(leases.len(), 2);
    let clock = c.clock.clone();
    drop(c);
    // Down for four lease timeouts (TINY's lease is 5 s).
    clock.advance(Duration::from_secs(20));
    let mut c = TestCoordinator::start_with(dir.path(), clock).await;
    assert_eq!(
        c.coordinator.expire_leases().await.unwrap(),
        0,
        "no lease expires at the start"
    );
    c.advance(Duration::from_secs(4)).await;
    let stale = c
        .workers
        .heartbeat(pb::HeartbeatRequest {
            worker_id: id.clone(),
            lease_ids: vec![leases[0].lease_id.clone()],
            leaving: false,
        })
        .await
        .unwrap()
        .into_inner()
        .stale_lease_ids;
    assert!(stale.is_empty(), "the heartbeating worker keeps its lease");
    // The silent one's lease runs out a lease timeout after the start; the other's was extended.
    c.advance(Duration::from_secs(2)).await;
    let ack = c
        .workers
        .report_epoch(pb::ReportEpochRequest {
            worker_id: id.clone(),
            lease_id: leases[0].lease_id.clone(),
            epochs: vec![epoch(1)],
            checkpoint: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!ack.cancel);
    let late = c
        .workers
        .report_epoch(pb::ReportEpochRequest {
            worker_id: id.clone(),
            lease_id: leases[1].lease_id.clone(),
            epochs: vec![epoch(1)],
            checkpoint: None,
        })
        .await
        .unwrap_err();
    assert_eq!(late.code(), Code::FailedPrecondition);
}

/// Numbers no trial produces are refused at the wire, naming the field, and nothing is stored:
/// the sweep stays readable. A worker that says its trial diverged fails the job for good, its
/// remaining attempts unspent.
#[tokio::test]
async fn impossible_metrics_are_refused_and_a_divergence_fails_the_job_once() {
    let (mut c, _dir) = start().await;
    let sweep = c.submit(SWEEP).await;
    let id = c.register("h", 2).await;
    let leases = c.lease(&id, 2).await;
    for (epochs, needle) in [
        (
            vec![pb::EpochMetrics {
                train_loss: f64::NAN,
                ..epoch(1)
            }],
            "train_loss",
        ),
        (vec![epoch(3)], "epoch 3"),
        (vec![epoch(1); 3], "3 epochs"),
    ] {
        let err = c
            .workers
            .report_epoch(pb::ReportEpochRequest {
                worker_id: id.clone(),
                lease_id: leases[0].lease_id.clone(),
                epochs,
                checkpoint: None,
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains(needle), "{err:?}");
    }
    let bad_result = c
        .workers
        .complete_job(pb::CompleteJobRequest {
            worker_id: id.clone(),
            lease_id: leases[0].lease_id.clone(),
            result: Some(pb::TrialResult {
                params: 117,
                test_acc: f64::INFINITY,
                best_epoch: 1,
                best_test_acc: 0.5,
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad_result.code(), Code::InvalidArgument);
    let no_kind = c
        .workers
        .fail_job(pb::FailJobRequest {
            worker_id: id.clone(),
            lease_id: leases[1].lease_id.clone(),
            error: "something".into(),
            kind: pb::FailureKind::Unspecified.into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        no_kind.code(),
        Code::InvalidArgument,
        "a failure says its kind"
    );
    let unknown_kind = c
        .workers
        .fail_job(pb::FailJobRequest {
            worker_id: id.clone(),
            lease_id: leases[1].lease_id.clone(),
            error: "something".into(),
            kind: 99,
        })
        .await
        .unwrap_err();
    assert_eq!(unknown_kind.code(), Code::InvalidArgument);
    assert!(
        unknown_kind.message().contains("kind = 99"),
        "{unknown_kind:?}"
    );
    let requeued = c
        .workers
        .fail_job(pb::FailJobRequest {
            worker_id: id.clone(),
            lease_id: leases[1].lease_id.clone(),
            error: "diverged at epoch 2: train_loss = NaN".into(),
            kind: pb::FailureKind::Diverged.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .requeued;
    assert!(!requeued, "a divergence is not tried again");
    let jobs = c
        .sweeps
        .list_jobs(pb::ListJobsRequest {
            sweep_id: sweep.sweep_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .jobs;
    let failed = jobs.iter().find(|j| j.job_id == leases[1].job_id).unwrap();
    assert_eq!(failed.state, pb::JobState::Failed as i32);
    assert!(failed.error.contains("diverged"), "{}", failed.error);
    let first = jobs.iter().find(|j| j.job_id == leases[0].job_id).unwrap();
    assert_eq!(
        (first.state, first.epochs_done),
        (pb::JobState::Leased as i32, 0)
    );
    c.sweeps
        .get_results(pb::GetResultsRequest {
            sweep_id: sweep.sweep_id,
            ..Default::default()
        })
        .await
        .expect("the sweep reads back");
}

/// A request retried after its reply was lost gets the grant of the first try, not a second one:
/// LeaseJobs and CompleteJob's next leases both, keyed by the worker's request id.
#[tokio::test]
async fn a_retried_request_gets_the_same_leases() {
    let (mut c, _dir) = start().await;
    c.submit(SWEEP).await;
    let id = c.register("h", 2).await;
    let lease = |c: &mut TestCoordinator, request_id: &str| {
        let mut w = c.workers.clone();
        let request = pb::LeaseJobsRequest {
            pack_size: 1,
            worker_id: id.clone(),
            slots: 2,
            request_id: request_id.into(),
        };
        async move {
            w.lease_jobs(request)
                .await
                .unwrap()
                .into_inner()
                .packs
                .into_iter()
                .flat_map(|p| p.leases)
                .collect::<Vec<_>>()
        }
    };
    let ids = |leases: &[pb::Lease]| {
        leases
            .iter()
            .map(|l| l.lease_id.clone())
            .collect::<Vec<_>>()
    };
    let first = lease(&mut c, "r1").await;
    assert_eq!(first.len(), 2);
    assert_eq!(
        ids(&lease(&mut c, "r1").await),
        ids(&first),
        "the retry gets the same leases"
    );
    let complete = pb::CompleteJobRequest {
        lease_id: first[0].lease_id.clone(),
        result: Some(pb::TrialResult {
            params: 117,
            test_acc: 0.6,
            best_epoch: 1,
            best_test_acc: 0.6,
        }),
        slots: 1,
        worker_id: id.clone(),
        request_id: "r2".into(),
        ..Default::default()
    };
    let next = c
        .workers
        .complete_job(complete.clone())
        .await
        .unwrap()
        .into_inner()
        .packs
        .into_iter()
        .flat_map(|p| p.leases)
        .collect::<Vec<_>>();
    assert_eq!(next.len(), 1);
    let again = c
        .workers
        .complete_job(complete)
        .await
        .unwrap()
        .into_inner()
        .packs
        .into_iter()
        .flat_map(|p| p.leases)
        .collect::<Vec<_>>();
    assert_eq!(
        ids(&again),
        ids(&next),
        "the retried completion grants nothing new"
    );
    // The one job left in the queue is still there for another request.
    let other = lease(&mut c, "r3").await;
    assert_eq!(other.len(), 1);
    assert!(!ids(&first).contains(&other[0].lease_id) && other[0].lease_id != next[0].lease_id);
    // A remembered lease that has ended is not handed out again.
    assert_eq!(
        ids(&lease(&mut c, "r1").await),
        vec![first[1].lease_id.clone()]
    );
}

/// A worker's id is issued with a secret part that no listing shows, so the name someone can read
/// off `workers` or a job view cannot be used to report on that worker's leases.
#[tokio::test]
async fn a_worker_cannot_be_impersonated_by_its_shown_name() {
    let (mut c, _dir) = start().await;
    let sweep_id = c.submit(sweeps::QUICK).await.sweep_id;
    let id = c.register("victim", 1).await;
    let (name, secret) = id.split_once('.').expect("NAME.SECRET");
    assert_eq!(name, "victim-1");
    assert!(secret.len() == 32 && secret.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_ne!(
        c.register("victim", 1).await,
        id,
        "every registration a new id"
    );
    let lease = c.lease(&id, 1).await.remove(0);
    let shown = c
        .sweeps
        .list_jobs(pb::ListJobsRequest {
            sweep_id,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .jobs
        .into_iter()
        .find(|j| j.job_id == lease.job_id)
        .unwrap()
        .worker_id;
    assert_eq!(shown, "victim-1");
    let forged = c
        .workers
        .complete_job(pb::CompleteJobRequest {
            worker_id: shown,
            lease_id: lease.lease_id.clone(),
            result: Some(pb::TrialResult {
                params: 117,
                test_acc: 0.99,
                best_epoch: 1,
                best_test_acc: 0.99,
            }),
            ..Default::default()
        })
        .await;
    assert_eq!(forged.unwrap_err().code(), Code::PermissionDenied);
}
