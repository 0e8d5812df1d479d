//! What every call carries besides its message: the shared token and the protocol version. A
//! coordinator started with a token refuses every call (both services) that does not carry it, as
//! `authorization: Bearer TOKEN` metadata, with UNAUTHENTICATED and a message saying what to do.
//! Every call also says its protocol version (`jetsweep-protocol: N`, N = [`crate::PROTOCOL_VERSION`]); one that does not, or says
//! another, is refused with FAILED_PRECONDITION naming both versions — after the token check, so a
//! caller without the token learns nothing. Clients attach both with [`ClientToken`]; the
//! coordinator checks both with [`RequireToken`].

use std::sync::Arc;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Status};

/// The metadata key the token travels in.
pub const METADATA_KEY: &str = "authorization";

/// The metadata key the caller's protocol version travels in.
pub const PROTOCOL_KEY: &str = "jetsweep-protocol";

/// What gRPC clients of jetsweep talk through: a channel that attaches the token, if there is one.
pub type Channel = InterceptedService<tonic::transport::Channel, ClientToken>;

/// A token that cannot travel in gRPC metadata.
#[derive(Debug)]
pub struct InvalidToken;

impl std::fmt::Display for InvalidToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the token must be printable ASCII without spaces (for example from `openssl rand -hex 16`)")
    }
}

impl std::error::Error for InvalidToken {}

fn valid(token: &str) -> Result<(), InvalidToken> {
    if !token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(InvalidToken)
    }
}

/// Client side: adds `authorization: Bearer TOKEN` to every call (nothing when there is no token),
/// and this release's protocol version.
#[derive(Clone)]
pub struct ClientToken {
    token: Option<MetadataValue<Ascii>>,
    /// [`crate::PROTOCOL_VERSION`] as metadata, made once, not on every call.
    protocol: MetadataValue<Ascii>,
}

impl Default for ClientToken {
    fn default() -> Self {
        ClientToken {
            token: None,
            protocol: MetadataValue::from(crate::PROTOCOL_VERSION),
        }
    }
}

impl ClientToken {
    /// No token (or an empty one, as from `JETSWEEP_TOKEN=`): calls go without one.
    pub fn new(token: Option<&str>) -> Result<ClientToken, InvalidToken> {
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            return Ok(ClientToken::default());
        };
        valid(token)?;
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| InvalidToken)?;
        Ok(ClientToken {
            token: Some(value),
            ..ClientToken::default()
        })
    }

    /// `channel` with this token on every call.
    pub fn wrap(self, channel: tonic::transport::Channel) -> Channel {
        InterceptedService::new(channel, self)
    }
}

impl Interceptor for ClientToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.token {
            request.metadata_mut().insert(METADATA_KEY, value.clone());
        }
        request
            .metadata_mut()
            .insert(PROTOCOL_KEY, self.protocol.clone());
        Ok(request)
    }
}

/// Server side: lets a call through only if it carries the token (every call, when there is none).
#[derive(Clone, Default)]
pub struct RequireToken(Option<Arc<[u8]>>);

impl RequireToken {
    /// No token (or an empty one): every call is let through.
    pub fn new(token: Option<&str>) -> Result<RequireToken, InvalidToken> {
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            return Ok(RequireToken(None));
        };
        valid(token)?;
        Ok(RequireToken(Some(
            format!("Bearer {token}").into_bytes().into(),
        )))
    }
}

impl RequireToken {
    /// Whether a token is required at all.
    pub fn required(&self) -> bool {
        self.0.is_some()
    }

    /// Whether `token` (as a person or script types it, without `Bearer `) is the one required.
    /// Always true when none is.
    pub fn accepts(&self, token: Option<&str>) -> bool {
        match (&self.0, token) {
            (None, _) => true,
            (Some(expected), Some(given)) => same(format!("Bearer {given}").as_bytes(), expected),
            (Some(_), None) => false,
        }
    }
}

impl Interceptor for RequireToken {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(expected) = &self.0 {
            match request.metadata().get(METADATA_KEY) {
                None => {
                    return Err(Status::unauthenticated(
                        "this coordinator requires a token: pass --token or set JETSWEEP_TOKEN",
                    ));
                }
                Some(given) if same(given.as_bytes(), expected) => {}
                Some(_) => {
                    return Err(Status::unauthenticated(
                        "wrong token: use the one the coordinator was started with (--token or JETSWEEP_TOKEN)",
                    ));
                }
            }
        }
        check_protocol(&request)?;
        Ok(request)
    }
}

/// Refuses a call of another protocol version, naming both.
fn check_protocol(request: &Request<()>) -> Result<(), Status> {
    let ours = crate::PROTOCOL_VERSION;
    let theirs = request.metadata().get(PROTOCOL_KEY).map(|v| v.to_str());
    match theirs {
        Some(Ok(v)) if v.trim().parse::<u32>() == Ok(ours) => Ok(()),
        None => Err(Status::failed_precondition(format!(
            "this client speaks jetsweep protocol 3 or older (its calls carry no {PROTOCOL_KEY} metadata); this coordinator speaks protocol {ours}: use the same jetsweep release on both (a hand-made call adds `{PROTOCOL_KEY}: {ours}`)"
        ))),
        Some(v) => Err(Status::failed_precondition(format!(
            "this client speaks jetsweep protocol {}; this coordinator speaks protocol {ours}: use the same jetsweep release on both",
            v.map(|v| v.chars().take(16).collect::<String>())
                .unwrap_or_else(|_| "(not text)".into())
        ))),
    }
}

/// Compares without stopping at the first difference, so timing does not reveal the token.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
