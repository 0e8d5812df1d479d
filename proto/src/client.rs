//! Connecting to a coordinator: one helper for the CLI, the worker and the tests, so the address
//! check, TLS, the token, the timeouts and the message limits are the same everywhere.
//!
//! `http://` is plaintext; `https://` is TLS (rustls), trusting the certificate authority given as
//! `--ca FILE` (PEM), or else the public web roots. A bare `host:port` means `http://`.

use std::path::Path;

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

use crate::Error;
use crate::auth::{Channel, ClientToken};
use crate::limits::{CONNECT_TIMEOUT, MAX_MESSAGE_BYTES};
use crate::v1::sweep_service_client::SweepServiceClient;
use crate::v1::worker_service_client::WorkerServiceClient;

/// The coordinator's address as a URL: `host:port` means `http://host:port`; `http://` and
/// `https://` are taken as they are; any other scheme is refused.
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
        Some(("http" | "https", _)) => address.to_string(),
        Some((scheme, _)) => {
            return Err(bad(&format!(
                "unknown scheme {:?}: use http://HOST:PORT",
                scheme.chars().take(20).collect::<String>()
            )));
        }
    };
    Ok(url)
}

fn endpoint(address: &str, ca: Option<&Path>) -> Result<(Endpoint, String), Error> {
    let url = coordinator_url(address)?;
    let bad = |reason: String| Error::Address {
        url: url.clone(),
        reason,
    };
    let mut endpoint = Endpoint::from_shared(url.clone())
        .map(|e| e.connect_timeout(CONNECT_TIMEOUT))
        .map_err(|e| bad(e.to_string()))?;
    if url.starts_with("https://") {
        let tls = match ca {
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| Error::Tls {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })?;
                ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem))
            }
            None => ClientTlsConfig::new().with_webpki_roots(),
        };
        endpoint = endpoint.tls_config(tls).map_err(|e| bad(with_causes(&e)))?;
    } else if ca.is_some() {
        return Err(bad(
            "a certificate authority (--ca) is for https:// addresses; this one is plaintext http://".into(),
        ));
    }
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

/// Set to `1` to send a token over plaintext `http://` to another machine anyway (a network
/// everyone on it is trusted with the token).
pub const INSECURE_ENV: &str = "JETSWEEP_INSECURE";

/// Whether `url`'s host is this machine (127.0.0.0/8, ::1, localhost).
fn is_loopback(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or("");
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Refuses to send a token in clear over the network: a token goes to another machine only over
/// `https://`, unless [`INSECURE_ENV`] says the network is trusted.
fn check_token_transport(url: &str, token: Option<&str>) -> Result<(), Error> {
    let has_token = token.is_some_and(|t| !t.is_empty());
    if !has_token || !url.starts_with("http://") || is_loopback(url) {
        return Ok(());
    }
    if std::env::var(INSECURE_ENV).is_ok_and(|v| v == "1") {
        return Ok(());
    }
    Err(Error::Address {
        url: url.to_string(),
        reason: format!(
            "this would send the token in clear over the network: use https:// (a coordinator started with --tls-cert), or set {INSECURE_ENV}=1 on a network where everyone may read the token"
        ),
    })
}

/// A channel to the coordinator at `address`, connected now (an unreachable coordinator is an
/// error that names it and the cause), carrying `token` on every call when there is one, over TLS
/// trusting `ca` (or the public roots) when the address is `https://`.
pub async fn connect(
    address: &str,
    token: Option<&str>,
    ca: Option<&Path>,
) -> Result<Channel, Error> {
    let (endpoint, url) = endpoint(address, ca)?;
    check_token_transport(&url, token)?;
    let token = ClientToken::new(token)?;
    let channel = endpoint.connect().await.map_err(|e| Error::Unreachable {
        url,
        reason: with_causes(&e),
    })?;
    Ok(token.wrap(channel))
}

/// Like [`connect`], but the connection is made on the first call and remade after it drops: for
/// a worker, which may start before its coordinator and must outlive its restarts.
pub fn connect_lazy(
    address: &str,
    token: Option<&str>,
    ca: Option<&Path>,
) -> Result<Channel, Error> {
    let (endpoint, url) = endpoint(address, ca)?;
    check_token_transport(&url, token)?;
    let token = ClientToken::new(token)?;
    Ok(token.wrap(endpoint.connect_lazy()))
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
        assert_eq!(coordinator_url("https://h:7070").unwrap(), "https://h:7070");
        for (bad, needle) in [("ftp://h", "ftp"), ("", "empty")] {
            let err = coordinator_url(bad).unwrap_err().to_string();
            assert!(err.contains(needle), "{bad}: {err}");
        }
    }

    #[test]
    fn a_token_goes_in_clear_only_to_this_machine() {
        for url in [
            "http://127.0.0.1:7070",
            "http://localhost:1",
            "http://[::1]:7070",
            "https://10.0.0.5:7070",
        ] {
            assert!(check_token_transport(url, Some("t")).is_ok(), "{url}");
        }
        assert!(check_token_transport("http://10.0.0.5:7070", None).is_ok());
        // (JETSWEEP_INSECURE is not set in the tests.)
        for url in [
            "http://10.0.0.5:7070",
            "http://coordinator:7070",
            "http://127.0.0.1.evil.example:1",
        ] {
            let e = check_token_transport(url, Some("t"))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("in clear") && e.contains(INSECURE_ENV),
                "{url}: {e}"
            );
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
        let err = connect(&format!("127.0.0.1:{port}"), None, None)
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
