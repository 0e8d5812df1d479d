//! Connecting to a coordinator: one helper for the CLI, the worker and the tests, so the address
//! check, the token, the timeouts and the message limits are the same everywhere.

use crate::v1::sweep_service_client::SweepServiceClient;
use crate::v1::worker_service_client::WorkerServiceClient;
use tonic::transport::Endpoint;

use crate::Error;
use crate::auth::{Channel, ClientToken};
use crate::limits::{CONNECT_TIMEOUT, MAX_MESSAGE_BYTES};

/// The coordinator's address as a URL: `host:port` means `http://host:port`. `https://` is
/// refused until the coordinator speaks TLS: a client must never believe it is encrypted when
/// it is not.
pub fn coordinator_url(address: &str) -> Result<String, Error> {
    let address = address.trim();
    let bad = |reason: &str| Error::Address {
        url: address.chars().take(200).collect(),
        reason: reason.to_string(),
    };
    if address.is_empty() {
        return Err(bad(
            "empty: give the coordinator's address, e.g. http://10.0.0.5:7070",
        ));
    }
    let url = match address.split_once("://") {
        None => format!("http://{address}"),
        Some(("http", _)) => address.to_string(),
        Some(("https", _)) => {
            return Err(bad(
                "https:// needs TLS, which this jetsweep does not speak yet; use http:// on a network you trust",
            ));
        }
        Some((scheme, _)) => {
            return Err(bad(&format!(
                "unknown scheme {:?}: use http://HOST:PORT",
                scheme.chars().take(20).collect::<String>()
            )));
        }
    };
    Ok(url)
}

fn endpoint(address: &str) -> Result<(Endpoint, String), Error> {
    let url = coordinator_url(address)?;
    let endpoint = Endpoint::from_shared(url.clone())
        .map(|e| e.connect_timeout(CONNECT_TIMEOUT))
        .map_err(|e| Error::Address {
            url: url.clone(),
            reason: e.to_string(),
        })?;
    Ok((endpoint, url))
}

/// An error and its causes, as one line: tonic's own message is only "transport error", the
/// cause (refused, name not resolved, timed out) is in its sources.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut line = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    line
}

/// A channel to the coordinator at `url`, connected now (an unreachable coordinator is an error
/// that says so), carrying `token` on every call when there is one.
pub async fn connect(address: &str, token: Option<&str>) -> Result<Channel, Error> {
    let token = ClientToken::new(token)?;
    let (endpoint, url) = endpoint(address)?;
    let channel = endpoint.connect().await.map_err(|e| Error::Unreachable {
        url,
        reason: with_causes(&e),
    })?;
    Ok(token.wrap(channel))
}

/// Like [`connect`], but the connection is made on the first call and remade after it drops: for
/// a worker, which may start before its coordinator and must outlive its restarts.
pub fn connect_lazy(address: &str, token: Option<&str>) -> Result<Channel, Error> {
    let token = ClientToken::new(token)?;
    Ok(token.wrap(endpoint(address)?.0.connect_lazy()))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_become_urls_or_are_refused_saying_why() {
        assert_eq!(
            coordinator_url("10.0.0.5:7070").unwrap(),
            "http://10.0.0.5:7070"
        );
        assert_eq!(coordinator_url(" http://h:1 ").unwrap(), "http://h:1");
        for (bad, needle) in [("https://h:7070", "TLS"), ("ftp://h", "ftp"), ("", "empty")] {
            let err = coordinator_url(bad).unwrap_err().to_string();
            assert!(err.contains(needle), "{bad}: {err}");
        }
    }

    #[tokio::test]
    async fn an_unreachable_coordinator_is_named_with_the_cause() {
        // A port nothing listens on: bind one, then let it go.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = connect(&format!("127.0.0.1:{port}"), None)
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains(&format!("http://127.0.0.1:{port}"))
                && err.to_lowercase().contains("refused"),
            "{err}"
        );
    }
}
