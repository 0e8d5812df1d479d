//! Connecting to a coordinator: one helper for the CLI, the worker and the tests, so the address
//! check, the token, the timeouts and the message limits are the same everywhere.

use crate::v1::sweep_service_client::SweepServiceClient;
use crate::v1::worker_service_client::WorkerServiceClient;
use tonic::transport::Endpoint;

use crate::Error;
use crate::auth::{Channel, ClientToken};
use crate::limits::{CONNECT_TIMEOUT, MAX_MESSAGE_BYTES};

fn endpoint(url: &str) -> Result<Endpoint, Error> {
    Endpoint::from_shared(url.to_string())
        .map(|e| e.connect_timeout(CONNECT_TIMEOUT))
        .map_err(|e| Error::Address {
            url: url.to_string(),
            reason: e.to_string(),
        })
}

/// A channel to the coordinator at `url`, connected now (an unreachable coordinator is an error
/// that says so), carrying `token` on every call when there is one.
pub async fn connect(url: &str, token: Option<&str>) -> Result<Channel, Error> {
    let token = ClientToken::new(token)?;
    let channel = endpoint(url)?
        .connect()
        .await
        .map_err(|e| Error::Unreachable {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
    Ok(token.wrap(channel))
}

/// Like [`connect`], but the connection is made on the first call and remade after it drops: for
/// a worker, which may start before its coordinator and must outlive its restarts.
pub fn connect_lazy(url: &str, token: Option<&str>) -> Result<Channel, Error> {
    let token = ClientToken::new(token)?;
    Ok(token.wrap(endpoint(url)?.connect_lazy()))
}

/// The people-and-tools service over `channel`, with the contract's message limits.
pub fn sweep_client(channel: Channel) -> SweepServiceClient<Channel> {
    SweepServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// The worker service over `channel`, with the contract's message limits.
pub fn worker_client(channel: Channel) -> WorkerServiceClient<Channel> {
    WorkerServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}
