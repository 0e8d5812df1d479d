//! The wire itself: protocol versions, bad requests and their statuses, the contract's
//! timing, dataset errors keeping their kind.

use super::*;

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
    let newer = PROTOCOL_VERSION + 1;
    let mut said = tonic::Request::new(pb::ListSweepsRequest::default());
    said.metadata_mut().insert(
        jetsweep_proto::auth::PROTOCOL_KEY,
        newer.to_string().parse().unwrap(),
    );
    let refused = old.list_sweeps(said).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains(&format!("protocol {newer}"))
            && refused.message().contains(&ours),
        "{}",
        refused.message()
    );
    c.sweeps
        .clone()
        .list_sweeps(pb::ListSweepsRequest::default())
        .await
        .expect("this release's client is let through");
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
