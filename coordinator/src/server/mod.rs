//! The coordinator as a server: its shared state and the front ends over it, composed by
//! [`serve`] on one port (gRPC and the dashboard) and [`serve_scaler`] on another.
//!
//! - `state`: [`Coordinator`], the shared state (writer, reader, clock, caches, configuration).
//! - `grpc/`: the SweepService, the WorkerService, their views of the domain, KEDA's scaler.
//! - `gate`: who may call what (credentials, roles, the transport and origin checks), before any
//!   handler of either front end; `sessions`: the dashboard's logins.
//! - `web/`: the dashboard, its JSON API and live event streams, `/healthz`.
//! - `metrics`: what `/metrics` reports, for Prometheus.
//! - `activity_cache`, `results_cache`: what the read side keeps between requests.
//! - [`start`]: a coordinator over a state file, bound and serving (`jetsweep serve`, `jetsweep
//!   run` and the tests all start one this way).

pub(crate) mod activity_cache;
pub mod connections;
pub mod gate;
pub mod grpc;
pub mod metrics;
pub(crate) mod results_cache;
pub(crate) mod sessions;
mod state;
pub mod web;

pub use grpc::scaler;
pub use grpc::views::results_page;
pub use state::{
    Coordinator, MAX_DATASET_FETCHES, MAX_WATCH_STREAMS, MAX_WATCH_STREAMS_PER_ADDRESS,
};

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jetsweep_proto::limits::MAX_MESSAGE_BYTES;
use jetsweep_proto::v1::sweep_service_server::SweepServiceServer;
use jetsweep_proto::v1::worker_service_server::WorkerServiceServer;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::service::interceptor::InterceptedService;

use crate::Error;
use crate::access::DataAccess;
use crate::clock::SharedClock;
use crate::store::Store;
use crate::store::lock::StateLock;

/// What a coordinator is started with.
pub struct StartConfig {
    /// The state file (SQLite); its folder is made if missing.
    pub state: PathBuf,
    /// Where prepared datasets and downloads live.
    pub data_dir: PathBuf,
    /// Where `now` comes from: the system clock in service, a hand-moved one in tests.
    pub clock: SharedClock,
    /// Which dataset files a submitted sweep may name.
    pub access: DataAccess,
    /// The single shared token, an admin's (`None`: none).
    pub token: Option<String>,
    /// The credentials of a tokens file (`serve --tokens`), beside the token (`None`: none).
    pub credentials: Option<crate::credentials::Credentials>,
    /// PEM certificate chain and key to serve TLS with (`None`: plaintext).
    pub tls: Option<(Vec<u8>, Vec<u8>)>,
    /// Who holds the state file, as a second coordinator on it is told (after "pid N, ").
    pub holder: String,
    /// How many client connections may be open, and for how long one may idle.
    pub connections: connections::Limits,
    /// `/metrics` answers without credentials.
    pub metrics_public: bool,
}

/// A coordinator that [`start`] started: serving until its `shutdown` completes.
pub struct Started {
    /// `http://ADDR` or `https://ADDR`, the address bound.
    pub url: String,
    /// The shared state, for what a caller does besides serving (the scaler, tests).
    pub coordinator: Coordinator,
    /// The server's task: ends when the shutdown future completes (or serving fails).
    pub served: JoinHandle<Result<(), tonic::transport::Error>>,
    /// The state file's lock, held as long as this is.
    pub lock: StateLock,
}

/// Starts a coordinator: takes the state file's lock (a second coordinator on it is refused,
/// naming the first), opens the store, configures access, token and TLS (a bad certificate is an
/// error before anything serves), and serves both services and the dashboard on `listener` until
/// `shutdown` completes. What `jetsweep serve`, `jetsweep run` and the test kit all do.
pub async fn start(
    config: StartConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Started, Error> {
    let open_error = |path: &std::path::Path, e: std::io::Error| Error::Open {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    if let Some(dir) = config.state.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| open_error(dir, e))?;
    }
    let mut lock = StateLock::acquire(&config.state)?;
    let store = Store::open(&config.state)?;
    let mut coordinator = Coordinator::new(store, config.data_dir, config.clock)?
        .with_data_access(config.access)
        .with_public_metrics(config.metrics_public);
    let mut credentials = config
        .credentials
        .unwrap_or_else(crate::credentials::Credentials::open);
    if let Some(token) = config.token.as_deref().filter(|t| !t.is_empty()) {
        credentials = credentials
            .with_admin_token(token)
            .map_err(|e| Error::InvalidRequest(format!("token: {e}")))?;
    }
    coordinator = coordinator.with_credentials(credentials);
    if let Some((cert, key)) = &config.tls {
        coordinator = coordinator.serve_tls(cert, key)?;
    }
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Unavailable(format!("the listener's address: {e}")))?;
    let url = format!(
        "{}://{addr}",
        if config.tls.is_some() {
            "https"
        } else {
            "http"
        }
    );
    lock.describe(&format!("{} {url}", config.holder))?;
    let served = tokio::spawn(serve(
        listener,
        coordinator.clone(),
        config.connections,
        shutdown,
    ));
    Ok(Started {
        url,
        coordinator,
        served,
        lock,
    })
}

/// How often expired leases are swept back into the queue even when no worker asks for work.
const EXPIRY_SCAN: Duration = Duration::from_secs(1);

/// Gone workers and unused datasets are looked for every this many expiry scans (a minute).
const FORGET_EVERY: u64 = 60;

/// Serves both services on `listener`, its connections bounded by `limits`, until `shutdown`
/// completes.
pub async fn serve(
    listener: TcpListener,
    coordinator: Coordinator,
    limits: connections::Limits,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let expiry = coordinator.clone();
    let scanner = tokio::spawn(async move {
        let mut tick = tokio::time::interval(EXPIRY_SCAN);
        for scan in 0u64.. {
            tick.tick().await;
            if let Err(e) = expiry.expire_leases().await {
                tracing::warn!(error = %e, "expiry scan failed; the next scan retries");
            }
            if scan % FORGET_EVERY != FORGET_EVERY - 1 {
                continue;
            }
            expiry.housekeeping().await;
        }
    });
    let protocol = jetsweep_proto::auth::RequireProtocol;
    // HTTP/2 pings find a client whose machine or network went away (a watch stream or a
    // dashboard's live page would otherwise hold its slot until the next send).
    let mut server = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)));
    if let Some(tls) = coordinator.tls.clone() {
        server = server.tls_config(tls)?;
    }
    // gRPC (HTTP/2) and the dashboard (HTTP/1.1 or 2) on one port: the services' routes are added
    // to the dashboard's router; every request is counted for /metrics. The standard gRPC health
    // service answers without a token (probes carry none).
    let (health_service, health) = health_service(
        &coordinator,
        &["", "jetsweep.v1.SweepService", "jetsweep.v1.WorkerService"],
    )
    .await;
    // The two layers below take their state by `Arc`: axum clones a layer's state on every
    // request, and the coordinator's handles are a few dozen reference counts.
    let metrics = Arc::new(coordinator.metrics.clone());
    let coordinator_metrics = coordinator.metrics.clone();
    let coordinator_for_gate = Arc::new(coordinator.clone());
    // Reflection describes jetsweep.proto and the health service, v1 and the older v1alpha that
    // some clients still ask first; callers need a viewer's right (the gate reads it as a read).
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(jetsweep_proto::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection()
        .build_v1()
        .expect("the descriptor sets compiled into the binary are valid (a test serves them)");
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .expect("the descriptor sets compiled into the binary are valid (a test serves them)");
    let routes = tonic::service::Routes::from(web::router(coordinator.clone()))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(InterceptedService::new(
            SweepServiceServer::new(grpc::sweeps::Sweeps(coordinator.clone()))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            protocol,
        ))
        .add_service(InterceptedService::new(
            WorkerServiceServer::new(grpc::workers::Workers(coordinator))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            protocol,
        ));
    // The gate decides who may call what, before any handler; the count sees its refusals too.
    let routes = tonic::service::Routes::from(
        routes
            .into_axum_router()
            .layer(axum::middleware::from_fn_with_state(
                coordinator_for_gate,
                gate::gate,
            ))
            .layer(axum::middleware::from_fn_with_state(
                metrics,
                web::count_requests,
            )),
    );
    let incoming = connections::Incoming::new(listener, limits, coordinator_metrics);
    let result = server
        .accept_http1(true)
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await;
    scanner.abort();
    health.abort();
    result
}

/// How often the gRPC health service's answer is brought up to date.
const HEALTH_CHECK: Duration = Duration::from_secs(2);

/// The standard gRPC health service for `services`, SERVING from the start (the store has just
/// opened), and the task that keeps it true to the store ([`report_health`]; abort it when the
/// server stops).
async fn health_service(
    coordinator: &Coordinator,
    services: &'static [&'static str],
) -> (
    tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>,
    tokio::task::JoinHandle<()>,
) {
    let (reporter, service) = tonic_health::server::health_reporter();
    for name in services {
        reporter
            .set_service_status(*name, tonic_health::ServingStatus::Serving)
            .await;
    }
    let task = tokio::spawn(report_health(coordinator.clone(), reporter, services));
    (service, task)
}

/// Keeps `services`' health status true to the store: SERVING while the state file answers a
/// read, NOT_SERVING (logged once per change) while it does not. Runs until aborted.
async fn report_health(
    coordinator: Coordinator,
    reporter: tonic_health::server::HealthReporter,
    services: &'static [&'static str],
) {
    use tonic_health::ServingStatus;
    let mut shown = ServingStatus::Serving;
    loop {
        let answer = coordinator.check_store().await;
        let status = match &answer {
            Ok(()) => ServingStatus::Serving,
            Err(_) => ServingStatus::NotServing,
        };
        if shown != status {
            if let Err(e) = &answer {
                tracing::warn!(error = %e, "the state file does not answer: health NOT_SERVING");
            } else {
                tracing::info!("the state file answers again: health SERVING");
            }
            for service in services {
                reporter.set_service_status(*service, status).await;
            }
            shown = status;
        }
        tokio::time::sleep(HEALTH_CHECK).await;
    }
}

/// Serves KEDA's external scaler ([`scaler`]) on `listener` until `shutdown` completes: plaintext
/// and without a token (KEDA sends neither), with the standard gRPC health service beside it (for
/// Kubernetes' gRPC probes, which speak no TLS).
pub async fn serve_scaler(
    listener: TcpListener,
    coordinator: Coordinator,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    use jetsweep_proto::externalscaler::external_scaler_server::ExternalScalerServer;
    let (health_service, health) =
        health_service(&coordinator, &["", "externalscaler.ExternalScaler"]).await;
    let result = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(
            ExternalScalerServer::new(scaler::Scaler::new(coordinator))
                .max_decoding_message_size(SCALER_MESSAGE_BYTES),
        )
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await;
    health.abort();
    result
}

/// Largest request the scaler takes: a ScaledObject's name, namespace and metadata.
const SCALER_MESSAGE_BYTES: usize = 64 * 1024;

#[cfg(test)]
mod tests;
