//! The real server on 127.0.0.1:0, called through the generated clients.

use std::time::Duration;

use jetsweep_proto::PROTOCOL_VERSION;
use jetsweep_proto::limits::{HEARTBEAT_INTERVAL, MAX_MESSAGE_BYTES, MIN_LEASE};
use jetsweep_proto::v1 as pb;
use jetsweep_proto::worker_id::worker_name;
use tonic::Code;

use crate::testkit::{TestCoordinator, sweeps};

const SWEEP: &str = sweeps::TINY;

/// A coordinator on loopback over a state file in its own folder (kept as long as the test runs).
async fn start() -> (TestCoordinator, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (TestCoordinator::start(dir.path()).await, dir)
}

fn epoch(n: u32) -> pb::EpochMetrics {
    pb::EpochMetrics {
        epoch: n,
        test_acc: 0.5,
        ..Default::default()
    }
}

/// A client of another protocol version — protocol 3's send none — is refused on both services
/// with FAILED_PRECONDITION naming both versions; this release's clients pass.
#[tokio::test]
async fn a_client_of_another_protocol_is_refused_naming_both_versions() {
    let (c, _dir) = start().await;
    let raw = tonic::transport::Channel::from_shared(c.url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let ours = format!("protocol {PROTOCOL_VERSION}");
    let mut old = pb::sweep_service_client::SweepServiceClient::new(raw.clone());
    let refused = old
        .list_sweeps(pb::ListSweepsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains("protocol 3 or older") && refused.message().contains(&ours),
        "{}",
        refused.message()
    );
    let mut old_worker = pb::worker_service_client::WorkerServiceClient::new(raw);
    let refused = old_worker
        .register(pb::RegisterRequest {
            protocol_version: 3,
            host: "h".into(),
            device: "cpu".into(),
            slots: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(refused.message().contains(&ours), "{}", refused.message());
    let mut said = tonic::Request::new(pb::ListSweepsRequest::default());
    said.metadata_mut()
        .insert(jetsweep_proto::auth::PROTOCOL_KEY, "5".parse().unwrap());
    let refused = old.list_sweeps(said).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains("protocol 5") && refused.message().contains(&ours),
        "{}",
        refused.message()
    );
    c.sweeps
        .clone()
        .list_sweeps(pb::ListSweepsRequest::default())
        .await
        .expect("this release's client is let through");
}

/// ListSweeps pages: newest first, a page at a time with the total, and a token it did not give is
/// refused.
#[tokio::test]
async fn sweeps_are_listed_a_page_at_a_time_newest_first() {
    let (mut c, _dir) = start().await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(c.submit(SWEEP).await.sweep_id);
    }
    let page = |token: &str| pb::ListSweepsRequest {
        page_size: 2,
        page_token: token.into(),
    };
    let first = c.sweeps.list_sweeps(page("")).await.unwrap().into_inner();
    assert_eq!(first.total, 3);
    let second = c
        .sweeps
        .list_sweeps(page(&first.next_page_token))
        .await
        .unwrap()
        .into_inner();
    assert!(second.next_page_token.is_empty(), "the last page");
    let listed: Vec<String> = first
        .sweeps
        .iter()
        .chain(&second.sweeps)
        .map(|s| s.sweep_id.clone())
        .collect();
    ids.reverse();
    assert_eq!(listed, ids, "every sweep once, newest first");
    let bad = c.sweeps.list_sweeps(page("nonsense")).await.unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
}

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
}

#[tokio::test]
async fn bad_requests_get_clear_statuses_and_the_server_keeps_serving() {
    let (mut c, _dir) = start().await;
    for bad in crate::testkit::bad_sweeps::all() {
        let err = c.client.submit(bad.toml.clone()).await.unwrap_err();
        let code = if bad.too_big {
            Code::ResourceExhausted
        } else {
            Code::InvalidArgument
        };
        assert_eq!(err.code(), code, "{}: {err:?}", bad.what);
        for n in bad.names {
            assert!(
                err.message().contains(n),
                "{}: {err:?} lacks {n:?}",
                bad.what
            );
        }
    }
    let missing = c
        .sweeps
        .get_sweep(pb::GetSweepRequest {
            sweep_id: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let traversal = c
        .workers
        .fetch_dataset(pb::FetchDatasetRequest {
            sha256: "../../etc/passwd".into(),
        })
        .await
        .err()
        .unwrap();
    assert_eq!(traversal.code(), Code::InvalidArgument);
    let unknown_worker = c
        .workers
        .lease_jobs(pb::LeaseJobsRequest {
            pack_size: 1,
            worker_id: "ghost".into(),
            slots: 1,
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown_worker.code(), Code::NotFound);
    // A message over the limit is refused before it is read (sent by a client without the
    // contract's own limit, as a foreign client would).
    let huge = format!("name = \"x\"\n# {}\n", "x".repeat(MAX_MESSAGE_BYTES));
    let mut unlimited = pb::sweep_service_client::SweepServiceClient::new(
        jetsweep_proto::client::connect(&c.url, None, None)
            .await
            .unwrap(),
    );
    let oversized = unlimited
        .submit_sweep(pb::SubmitSweepRequest {
            sweep_toml: huge.into(),
        })
        .await
        .unwrap_err();
    assert_eq!(oversized.code(), Code::OutOfRange, "{oversized:?}");
    assert!(
        oversized.message().contains("the limit is: 4194304 bytes"),
        "{oversized:?}"
    );
    // Text that is not UTF-8 is refused saying where.
    let latin1 = c
        .sweeps
        .submit_sweep(pb::SubmitSweepRequest {
            sweep_toml: b"name = \"caf\xe9\"\n".to_vec(),
        })
        .await
        .unwrap_err();
    assert_eq!(latin1.code(), Code::InvalidArgument, "{latin1:?}");
    assert!(
        latin1.message().contains("UTF-8") && latin1.message().contains("offset 11"),
        "{latin1:?}"
    );
    // Still serving, and nothing was stored by any of the above.
    let sweep = c.submit(SWEEP).await;
    assert_eq!(sweep.total, 4);
    assert_eq!(
        c.sweeps
            .list_sweeps(pb::ListSweepsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .sweeps
            .len(),
        1
    );
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

/// Registration tells a worker the contract's timing: heartbeat every second, and the shortest
/// lease any job may have, at least three heartbeats long.
#[tokio::test]
async fn registration_answers_the_contracts_timing() {
    let (mut c, _dir) = start().await;
    let reg = c
        .workers
        .register(pb::RegisterRequest {
            protocol_version: PROTOCOL_VERSION,
            host: "h".into(),
            device: String::new(),
            slots: 1,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (reg.heartbeat_interval_ms, reg.lease_ttl_ms),
        (
            HEARTBEAT_INTERVAL.as_millis() as u32,
            MIN_LEASE.as_millis() as u32
        )
    );
    assert!(reg.lease_ttl_ms >= 3 * reg.heartbeat_interval_ms);
}

/// A dataset the coordinator cannot use keeps its kind on the wire: a file that is not there is
/// NOT_FOUND, one that is not a dataset INVALID_ARGUMENT; neither stores anything.
#[tokio::test]
async fn dataset_errors_keep_their_kind() {
    let (mut c, dir) = start().await;
    let not_a_dataset = dir.path().join("notes.csv");
    std::fs::write(&not_a_dataset, "a,b\n1,2\n").unwrap();
    for (dataset, code) in [
        (dir.path().join("missing.csv"), Code::NotFound),
        (not_a_dataset, Code::InvalidArgument),
    ] {
        let err = c
            .sweeps
            .submit_sweep(pb::SubmitSweepRequest {
                sweep_toml: format!(
                    "name = \"x\"\ndataset = {:?}\n",
                    dataset.display().to_string()
                )
                .into(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), code, "{}: {err:?}", dataset.display());
        // The file's own lines (its header here) are the coordinator's, not the client's.
        assert!(!err.message().contains("found"), "{err:?}");
    }
    let sweeps = c
        .sweeps
        .list_sweeps(pb::ListSweepsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .sweeps;
    assert!(sweeps.is_empty());
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

/// A worker that stops heartbeating is shown as gone once ten heartbeats have passed.
#[tokio::test]
async fn a_silent_worker_is_shown_as_gone() {
    let (mut c, _dir) = start().await;
    let id = c.register("h", 1).await;
    let list = |c: &mut TestCoordinator| {
        let mut s = c.sweeps.clone();
        async move {
            s.list_workers(pb::ListWorkersRequest {})
                .await
                .unwrap()
                .into_inner()
                .workers
        }
    };
    assert!(!list(&mut c).await[0].gone);
    c.advance(Duration::from_secs(9)).await;
    assert!(
        !list(&mut c).await[0].gone,
        "nine silent heartbeats: not gone yet"
    );
    c.advance(Duration::from_secs(2)).await;
    let workers = list(&mut c).await;
    // Listed by name only: the id's secret part is never shown.
    assert_eq!(
        (workers[0].worker_id.as_str(), workers[0].gone),
        (worker_name(&id), true)
    );
    assert_ne!(workers[0].worker_id, id);
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

/// Results read back a page at a time, every row once, the best index counted over all pages, the
/// dataset named once; a token this server did not give is refused.
#[tokio::test]
async fn results_come_in_pages() {
    let (mut c, _dir) = start().await;
    let sweep = c
        .submit(&SWEEP.replace("seed = [0, 1]", "seed = [0]").replace(
            "batch_size = [64, 128]",
            "batch_size = [16, 32, 64, 128, 256]",
        ))
        .await;
    let id = c.register("h", 8).await;
    let leases = c.lease(&id, 8).await;
    assert_eq!(leases.len(), 5);
    for (i, lease) in leases.iter().enumerate() {
        let acc = [0.5, 0.9, 0.6, 0.7, 0.55][i];
        c.workers
            .complete_job(pb::CompleteJobRequest {
                worker_id: id.clone(),
                lease_id: lease.lease_id.clone(),
                result: Some(pb::TrialResult {
                    params: 117,
                    test_acc: acc,
                    best_epoch: 1,
                    best_test_acc: acc,
                }),
                epochs: vec![pb::EpochMetrics {
                    val_loss: 1.0 - acc,
                    ..epoch(1)
                }],
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let (mut rows, mut token, mut pages) = (Vec::new(), String::new(), 0);
    loop {
        let page = c
            .sweeps
            .get_results(pb::GetResultsRequest {
                sweep_id: sweep.sweep_id.clone(),
                page_size: 2,
                page_token: token,
            })
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        assert_eq!((page.total_rows, page.best), (5, 1));
        assert!(page.dataset.as_ref().unwrap().synthetic);
        rows.extend(page.rows.into_iter().map(|r| r.spec.unwrap().batch_size));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!((pages, rows), (3, vec![16, 32, 64, 128, 256]));

    // Curves page the same way: every job once, in grid order; a page size past the limit is
    // clamped; tokens this server did not give and unknown sweeps are refused.
    let curves = |page_size: u32, page_token: &str, sweep_id: &str| {
        let mut sweeps = c.sweeps.clone();
        let request = pb::GetCurvesRequest {
            sweep_id: sweep_id.to_string(),
            page_size,
            page_token: page_token.to_string(),
        };
        async move { sweeps.get_curves(request).await.map(|r| r.into_inner()) }
    };
    let (mut jobs, mut token, mut pages) = (Vec::new(), String::new(), 0);
    loop {
        let page = curves(2, &token, &sweep.sweep_id).await.unwrap();
        pages += 1;
        assert!(page.jobs.iter().all(|j| j.epochs.len() == 1), "{page:?}");
        jobs.extend(page.jobs.into_iter().map(|j| j.job_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let leased: Vec<String> = leases.iter().map(|l| l.job_id.clone()).collect();
    assert_eq!((pages, jobs), (3, leased));
    let all = curves(u32::MAX, "", &sweep.sweep_id).await.unwrap();
    assert_eq!((all.jobs.len(), all.next_page_token.as_str()), (5, ""));
    for token in ["x", "99999999999", "1.x", "-1"] {
        let refused = curves(2, token, &sweep.sweep_id).await.unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{token}");
    }
    let unknown = curves(2, "", "no-such-sweep").await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);

    let bad = c
        .sweeps
        .get_results(pb::GetResultsRequest {
            sweep_id: sweep.sweep_id,
            page_size: 2,
            page_token: "x".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
}

/// The minute's housekeeping removes a prepared dataset once no queued or running job needs it and
/// an hour has passed; a sweep naming it again prepares it again.
#[tokio::test]
async fn housekeeping_removes_a_dataset_no_job_needs_after_an_hour() {
    let dir = tempfile::tempdir().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut c = TestCoordinator::start_with(dir.path(), crate::clock::ManualClock::at(now)).await;
    let sweep_id = c.submit(sweeps::TINY).await.sweep_id;
    let jobs = c
        .sweeps
        .list_jobs(pb::ListJobsRequest {
            sweep_id,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .jobs;
    let sha256 = jobs[0]
        .spec
        .as_ref()
        .unwrap()
        .dataset
        .as_ref()
        .unwrap()
        .sha256
        .clone();
    let file = crate::datasets::dataset_path(dir.path(), &sha256);
    assert!(file.is_file());
    c.advance(Duration::from_secs(7200)).await;
    c.coordinator.housekeeping().await;
    assert!(file.is_file(), "queued jobs need it");

    let id = c.register("w", 4).await;
    for lease in c.lease(&id, 4).await {
        c.complete(&id, &lease, 0.5).await;
    }
    c.coordinator.housekeeping().await;
    assert!(!file.exists(), "every job done and an hour passed");
    c.submit(sweeps::TINY).await;
    assert!(file.is_file(), "prepared again when named again");
}

/// `/metrics` is Prometheus text whose counts equal the store's; the gRPC health service answers
/// SERVING without a token; `/healthz` answers ok.
#[tokio::test]
async fn metrics_match_the_store_and_health_answers_serving() {
    let (mut c, _dir) = start().await;
    c.submit(sweeps::QUICK).await;
    let id = c.register("m", 8).await;
    let leases = c.lease(&id, 3).await;
    for lease in &leases[..2] {
        c.complete(&id, lease, 0.5).await;
    }
    let url = c.url.clone();
    let (status, text) =
        tokio::task::spawn_blocking(move || crate::testkit::http_get(&url, "/metrics", None))
            .await
            .unwrap();
    assert_eq!(status, 200, "{text}");
    assert!(text.trim_end().ends_with("# EOF"), "{text}");
    let mut values = std::collections::HashMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (name, value) = line.rsplit_once(' ').expect("NAME VALUE");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("not a number: {line}"));
        values.insert(name.to_string(), value);
    }
    let expect = [
        ("jetsweep_jobs{state=\"queued\"}", 5.0),
        ("jetsweep_jobs{state=\"running\"}", 1.0),
        ("jetsweep_jobs{state=\"done\"}", 2.0),
        ("jetsweep_leases_granted_total", 3.0),
        ("jetsweep_completions_total", 2.0),
        ("jetsweep_lease_expiries_total", 0.0),
        ("jetsweep_workers_connected", 1.0),
        (
            "jetsweep_requests_total{rpc=\"WorkerService/CompleteJob\",code=\"0\"}",
            2.0,
        ),
    ];
    for (name, want) in expect {
        assert_eq!(values.get(name), Some(&want), "{name} in\n{text}");
    }
    assert!(values["jetsweep_store_commit_seconds_count"] >= 4.0);

    // Without a token: probes carry none.
    let channel = tonic::transport::Endpoint::from_shared(c.url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    for service in ["", "jetsweep.v1.WorkerService"] {
        let status = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(
            status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        );
    }
    let url = c.url.clone();
    let healthz =
        tokio::task::spawn_blocking(move || crate::testkit::http_get(&url, "/healthz", None))
            .await
            .unwrap();
    assert_eq!(healthz, (200, "ok\n".to_string()));
}

/// The KEDA scaler on a second loopback port, over the same store: what each call answers.
#[tokio::test]
async fn the_keda_scaler_answers_with_the_stores_counts() {
    use jetsweep_proto::externalscaler as ks;
    use ks::external_scaler_client::ExternalScalerClient;

    let (mut c, _dir) = start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(crate::server::serve_scaler(
        listener,
        c.coordinator.clone(),
        async {
            let _ = stopped.await;
        },
    ));
    let channel = tonic::transport::Endpoint::from_shared(url)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut scaler = ExternalScalerClient::new(channel.clone());
    // Kubernetes' gRPC probe asks the health service on this port, with no TLS and no token.
    let health = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        health.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    let object = |metadata: &[(&str, &str)]| ks::ScaledObjectRef {
        name: "jetsweep-worker".into(),
        namespace: "jetsweep".into(),
        scaler_metadata: metadata
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    let slots = object(&[("slotsPerWorker", "2"), ("jobsPerSlot", "3")]);
    // What the store holds, read over the SweepService, beside what the scaler says.
    async fn store_says(c: &mut TestCoordinator, sweep: &str) -> i64 {
        let view = c.sweep(sweep).await;
        (view.queued + view.leased) as i64
    }
    let active = |scaler: &mut ExternalScalerClient<tonic::transport::Channel>| {
        let mut scaler = scaler.clone();
        let object = slots.clone();
        async move { scaler.is_active(object).await.unwrap().into_inner().result }
    };
    let metric = |scaler: &mut ExternalScalerClient<tonic::transport::Channel>| {
        let mut scaler = scaler.clone();
        let request = ks::GetMetricsRequest {
            scaled_object_ref: Some(slots.clone()),
            metric_name: crate::server::scaler::METRIC.into(),
        };
        async move {
            let values = scaler.get_metrics(request).await.unwrap().into_inner();
            assert_eq!(values.metric_values.len(), 1);
            let value = &values.metric_values[0];
            assert_eq!(value.metric_value as f64, value.metric_value_float);
            value.metric_value
        }
    };

    // Nothing submitted: inactive, no work.
    assert!(!active(&mut scaler).await);
    assert_eq!(metric(&mut scaler).await, 0);
    let spec = scaler
        .get_metric_spec(slots.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(spec.metric_specs.len(), 1);
    assert_eq!(
        spec.metric_specs[0].metric_name,
        crate::server::scaler::METRIC
    );
    assert_eq!(
        spec.metric_specs[0].target_size, 6,
        "2 slots × 3 jobs per slot"
    );
    let plain = scaler
        .get_metric_spec(object(&[]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        plain.metric_specs[0].target_size, 1,
        "one job per worker by default"
    );
    let mut stream = scaler
        .stream_is_active(slots.clone())
        .await
        .unwrap()
        .into_inner();
    assert!(!stream.message().await.unwrap().unwrap().result);

    // 4 queued; then 2 of them running; then 1 done.
    let sweep = c.submit(SWEEP).await.sweep_id;
    assert!(
        stream.message().await.unwrap().unwrap().result,
        "the stream says when work comes"
    );
    assert!(active(&mut scaler).await);
    assert_eq!(metric(&mut scaler).await, 4);
    assert_eq!(store_says(&mut c, &sweep).await, 4);
    let worker = c.register("h", 2).await;
    let leases = c.lease(&worker, 2).await;
    assert_eq!(leases.len(), 2);
    assert_eq!(metric(&mut scaler).await, 4, "2 queued + 2 running");
    c.complete(&worker, &leases[0], 0.5).await;
    assert_eq!(metric(&mut scaler).await, 3);
    assert_eq!(store_says(&mut c, &sweep).await, 3);

    // All done: no work, and the stream says so.
    c.complete(&worker, &leases[1], 0.5).await;
    for lease in c.lease(&worker, 2).await {
        c.complete(&worker, &lease, 0.5).await;
    }
    assert_eq!(metric(&mut scaler).await, 0);
    assert_eq!(store_says(&mut c, &sweep).await, 0);
    assert!(!active(&mut scaler).await);
    assert!(!stream.message().await.unwrap().unwrap().result);

    // Bad metadata and unknown metrics are refused by name.
    for (key, value) in [
        ("slotsPerWorker", "0"),
        ("jobsPerSlot", "many"),
        ("slotsPerWorker", "-2"),
    ] {
        let refused = scaler
            .get_metric_spec(object(&[(key, value)]))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument);
        assert!(
            refused.message().contains(key) && refused.message().contains(value),
            "{}",
            refused.message()
        );
    }
    let huge = object(&[
        ("slotsPerWorker", "4294967296"),
        ("jobsPerSlot", "4294967296"),
    ]);
    assert_eq!(
        scaler.is_active(huge).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let unknown = scaler
        .get_metrics(ks::GetMetricsRequest {
            scaled_object_ref: Some(slots.clone()),
            metric_name: "queue".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
}
