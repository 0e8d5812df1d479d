//! The real server on 127.0.0.1:0, called through the generated clients.

use jetsweep_proto::PROTOCOL_VERSION;
use jetsweep_proto::v1 as pb;
use jetsweep_proto::v1::sweep_service_client::SweepServiceClient;
use jetsweep_proto::v1::worker_service_client::WorkerServiceClient;
use tonic::Code;
use tonic::transport::Channel;

use super::*;

const SWEEP: &str = r#"
name = "tiny"
dataset = "synthetic:2000"
lease_timeout_s = 5
[defaults]
max_epochs = 2
learning_rate = 1e-3
[grid]
batch_size = [64, 128]
seed = [0, 1]
"#;

struct Running {
    sweeps: SweepServiceClient<Channel>,
    workers: WorkerServiceClient<Channel>,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start() -> Running {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("state.db")).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let coordinator = Coordinator::new(store, dir.path().to_path_buf()).unwrap();
    tokio::spawn(serve(listener, coordinator, async {
        let _ = stopped.await;
    }));
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    Running {
        sweeps: SweepServiceClient::new(channel.clone()),
        workers: WorkerServiceClient::new(channel),
        _dir: dir,
        _stop: stop,
    }
}

/// Submits a sweep file that must be accepted.
async fn submit(c: &mut Running, toml: &str) -> pb::SweepView {
    c.sweeps
        .submit_sweep(pb::SubmitSweepRequest {
            sweep_toml: toml.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .sweep
        .unwrap()
}

fn epoch(n: u32) -> pb::EpochMetrics {
    pb::EpochMetrics {
        epoch: n,
        test_acc: 0.5,
        ..Default::default()
    }
}

#[tokio::test]
async fn a_sweep_runs_through_the_wire_and_stale_leases_are_refused() {
    let mut c = start().await;
    let sweep = submit(&mut c, SWEEP).await;
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

    let leases = c
        .workers
        .lease_jobs(pb::LeaseJobsRequest {
            worker_id: reg.worker_id.clone(),
            max_jobs: 4,
        })
        .await
        .unwrap()
        .into_inner()
        .leases;
    assert_eq!(leases.len(), 4);
    let dataset = leases[0].spec.as_ref().unwrap().dataset.clone().unwrap();
    assert!(dataset.synthetic && dataset.sha256.len() == 64);

    for (i, lease) in leases.iter().enumerate() {
        // Epoch 1 in a report of its own; epoch 2 rides with the completion.
        let ack = c
            .workers
            .report_epoch(pb::ReportEpochRequest {
                lease_id: lease.lease_id.clone(),
                epochs: vec![epoch(1)],
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
            lease_id: lease.lease_id.clone(),
            result: Some(result),
            epochs: vec![epoch(2)],
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
    // A report on a lease that has ended is refused.
    let stale = c
        .workers
        .report_epoch(pb::ReportEpochRequest {
            lease_id: leases[0].lease_id.clone(),
            epochs: vec![epoch(3)],
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
    let again = submit(&mut c, SWEEP).await;
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
    let mut c = start().await;
    for (toml, code, needle) in [
        (
            "name = \"x\"\n[grid]\nbatch_size = [0]\n",
            Code::InvalidArgument,
            "batch_size",
        ),
        ("name = \"x\"\nfoo = 1\n", Code::InvalidArgument, "foo"),
        (
            "name = \"x\"\ndataset = \"imagenet\"\n",
            Code::InvalidArgument,
            "imagenet",
        ),
        (
            "name = \"x\"\n[grid]\nseed = [1,2,3,4,5,6,7,8,9,10,11]\nbatch_size = [1,2,3,4,5,6,7,8,9,10]\nmax_epochs = [1,2,3,4,5,6,7,8,9,10]\nlearning_rate = [0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1.0]\nmodel = [\"mlp:1\",\"mlp:2\",\"mlp:3\",\"mlp:4\",\"mlp:5\",\"mlp:6\",\"mlp:7\",\"mlp:8\",\"mlp:9\",\"mlp:10\"]\n",
            Code::ResourceExhausted,
            "110000 cells; the limit is 100000",
        ),
    ] {
        let err = c
            .sweeps
            .submit_sweep(pb::SubmitSweepRequest {
                sweep_toml: toml.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), code, "{toml}: {err:?}");
        assert!(err.message().contains(needle), "{err:?}");
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
            worker_id: "ghost".into(),
            max_jobs: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(unknown_worker.code(), Code::NotFound);
    // A message over the limit is refused before it is read.
    let huge = format!("name = \"x\"\n# {}\n", "x".repeat(MAX_MESSAGE_BYTES));
    let oversized = c
        .sweeps
        .submit_sweep(pb::SubmitSweepRequest { sweep_toml: huge })
        .await
        .unwrap_err();
    assert_eq!(oversized.code(), Code::OutOfRange, "{oversized:?}");
    assert!(
        oversized.message().contains("the limit is: 4194304 bytes"),
        "{oversized:?}"
    );
    // Still serving, and nothing was stored by any of the above.
    let sweep = submit(&mut c, SWEEP).await;
    assert_eq!(sweep.total, 4);
    assert_eq!(
        c.sweeps
            .list_sweeps(pb::ListSweepsRequest {})
            .await
            .unwrap()
            .into_inner()
            .sweeps
            .len(),
        1
    );
}

/// A worker that completes with `lease_next` gets its next job in the same call, and walks the whole
/// sweep with one call per job; a completion on a stale lease grants nothing; an empty report is
/// refused.
#[tokio::test]
async fn completing_a_job_leases_the_next_in_the_same_commit() {
    let mut c = start().await;
    let sweep = submit(&mut c, SWEEP).await;
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
            lease_id: "x.1".into(),
            epochs: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(empty.code(), Code::InvalidArgument);
    let mut lease = c
        .workers
        .lease_jobs(pb::LeaseJobsRequest {
            worker_id: worker_id.clone(),
            max_jobs: 1,
        })
        .await
        .unwrap()
        .into_inner()
        .leases
        .remove(0);
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
                lease_next: 1,
                worker_id: worker_id.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .leases;
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
            lease_next: 1,
            worker_id: worker_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(again.leases.is_empty());
    let stale = c
        .workers
        .complete_job(pb::CompleteJobRequest {
            lease_id: format!("{}.9", first.job_id),
            result: Some(result),
            lease_next: 1,
            worker_id,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::FailedPrecondition);
}
