//! What operators rely on: housekeeping, /metrics and health, KEDA's scaler.

use super::*;

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
    // No Accept header: the classic text format, which has no `# EOF`.
    assert!(!text.contains("# EOF"), "{text}");
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
            "jetsweep_sweep_open_jobs{sweep=\"quick-1\",state=\"queued\"}",
            5.0,
        ),
        (
            "jetsweep_sweep_open_jobs{sweep=\"quick-1\",state=\"running\"}",
            1.0,
        ),
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

/// gRPC server reflection (v1, as grpcurl asks) lists the services and describes their methods,
/// so a client needs no copy of the .proto file.
#[tokio::test]
async fn reflection_lists_the_services_and_describes_them() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let (c, _dir) = start().await;
    let channel = tonic::transport::Endpoint::from_shared(c.url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = ServerReflectionClient::new(channel);
    let ask = |message| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(message),
    };
    let requests = tokio_stream::iter(vec![
        ask(MessageRequest::ListServices(String::new())),
        ask(MessageRequest::FileContainingSymbol(
            "jetsweep.v1.SweepService".into(),
        )),
    ]);
    let mut answers = client
        .server_reflection_info(requests)
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        answers.message().await.unwrap().unwrap().message_response
    else {
        panic!("no service list");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for service in [
        "jetsweep.v1.SweepService",
        "jetsweep.v1.WorkerService",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == service),
            "{service} not in {names:?}"
        );
    }
    assert!(
        !names.iter().any(|n| n.contains("ExternalScaler")),
        "KEDA's scaler is served elsewhere: {names:?}"
    );
    let Some(MessageResponse::FileDescriptorResponse(files)) =
        answers.message().await.unwrap().unwrap().message_response
    else {
        panic!("no file descriptor");
    };
    // The encoded descriptor of jetsweep.proto: its service and method names are in it.
    let file = String::from_utf8_lossy(&files.file_descriptor_proto[0]).into_owned();
    for name in [
        "jetsweep.proto",
        "SweepService",
        "SubmitSweep",
        "WatchSweep",
    ] {
        assert!(file.contains(name), "{name} not described");
    }
}
