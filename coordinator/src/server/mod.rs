//! The gRPC server: glue between the wire and the domain. Handlers unpack and validate requests, run
//! the domain functions of [`crate::jobs`] through the store's group-committing writer (or over a
//! read connection on a blocking thread), and convert the answer back. Domain errors become gRPC
//! statuses in exactly one place ([`status`]).

mod convert;
mod sweeps;
mod workers;
mod writer;

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jetsweep_proto::auth::{InvalidToken, RequireToken};
use jetsweep_proto::v1::sweep_service_server::SweepServiceServer;
use jetsweep_proto::v1::worker_service_server::WorkerServiceServer;
use tokio::net::TcpListener;
use tonic::Status;
use tonic::service::interceptor::InterceptedService;

use crate::jobs::Millis;
use crate::store::Store;
use crate::{StoreError, SweepError};

/// Largest message accepted or sent. Sweep files and reports are small; dataset chunks are 1 MiB.
pub const MAX_MESSAGE_BYTES: usize = 4 << 20;
/// Dataset files are streamed in chunks of this size.
pub const DATASET_CHUNK_BYTES: usize = 1 << 20;

/// Shared state of a running coordinator.
#[derive(Clone)]
pub struct Coordinator {
    /// Every state change goes through the one writer, which commits concurrent requests together.
    writer: writer::Writer,
    /// A read-only connection for queries (status, results, watch): they never hold up the writer.
    reader: Arc<Mutex<Store>>,
    /// Prepared datasets and the download cache live here.
    data_dir: PathBuf,
    /// Checks every call's token (lets all through when the coordinator has none).
    auth: RequireToken,
}

/// Wall-clock now in Unix milliseconds.
pub fn now_ms() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}

impl Coordinator {
    /// A coordinator over the state file `store` (a file store: queries use a second connection).
    pub fn new(store: Store, data_dir: PathBuf) -> Result<Self, StoreError> {
        let reader = store.open_reader()?;
        Ok(Coordinator {
            writer: writer::Writer::start(store)?,
            reader: Arc::new(Mutex::new(reader)),
            data_dir,
            auth: RequireToken::default(),
        })
    }

    /// Requires `token` on every call of both services.
    pub fn require_token(mut self, token: &str) -> Result<Self, InvalidToken> {
        self.auth = RequireToken::new(Some(token))?;
        Ok(self)
    }

    /// Runs `f` in the writer's next group commit; returns once it is committed. `f` may run twice
    /// (see [`writer`]): it must be a pure function of the store and its arguments.
    async fn write<T: Send + 'static>(
        &self,
        f: impl Fn(&rusqlite::Transaction<'_>, Millis) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, Status> {
        self.writer.write(f).await.map_err(status)
    }

    /// Runs `f` over a read snapshot on a blocking thread.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, Status> {
        let store = self.reader.clone();
        tokio::task::spawn_blocking(move || {
            let mut store = store.lock().unwrap_or_else(|p| p.into_inner());
            store.read(f)
        })
        .await
        .map_err(|e| Status::internal(format!("store task failed: {e}")))?
        .map_err(status)
    }
}

/// The one mapping from domain errors to gRPC statuses.
pub fn status(e: StoreError) -> Status {
    match e {
        StoreError::NotFound(what) => Status::not_found(format!("{what} not found")),
        StoreError::StaleLease { .. } => Status::failed_precondition(e.to_string()),
        StoreError::Unavailable(_) => Status::unavailable(e.to_string()),
        other => Status::internal(other.to_string()),
    }
}

/// A required string field that is empty is an `invalid_argument` naming the field.
fn required(value: &str, field: &str) -> Result<(), Status> {
    if value.is_empty() {
        Err(Status::invalid_argument(format!("{field} is required")))
    } else {
        Ok(())
    }
}

/// A bad sweep file as a status.
pub fn sweep_status(e: SweepError) -> Status {
    match e {
        SweepError::TooManyCells { .. } => Status::resource_exhausted(e.to_string()),
        other => Status::invalid_argument(other.to_string()),
    }
}

/// How often expired leases are swept back into the queue even when no worker asks for work.
const EXPIRY_SCAN: Duration = Duration::from_secs(1);

/// Serves both services on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    coordinator: Coordinator,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let expiry = coordinator.clone();
    let scanner = tokio::spawn(async move {
        let mut tick = tokio::time::interval(EXPIRY_SCAN);
        loop {
            tick.tick().await;
            let _ = expiry.write(crate::jobs::expire_leases).await;
        }
    });
    let auth = coordinator.auth.clone();
    let result = tonic::transport::Server::builder()
        .add_service(InterceptedService::new(
            SweepServiceServer::new(sweeps::Sweeps(coordinator.clone()))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            auth.clone(),
        ))
        .add_service(InterceptedService::new(
            WorkerServiceServer::new(workers::Workers(coordinator))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            auth,
        ))
        // No Nagle delay: replies are small and a worker waits on each one.
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await;
    scanner.abort();
    result
}

#[cfg(test)]
mod tests;
