//! What every call carries besides its message: a token and the protocol version. A coordinator
//! with credentials refuses every call (both services) that does not carry one of its tokens, as
//! `authorization: Bearer TOKEN` metadata, with UNAUTHENTICATED and a message saying what to do
//! (its gate does that, before any service sees the call). Every call also says its protocol
//! version (`jetsweep-protocol: N`, N = [`crate::PROTOCOL_VERSION`]); one that does not, or says
//! another, is refused with FAILED_PRECONDITION naming both versions ([`RequireProtocol`]) —
//! after the token check, so a caller without a token learns nothing. Clients attach both with
//! [`ClientToken`].

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

/// Server side: refuses a call of another protocol version. (Who may call is the coordinator's
/// gate, over the whole server: `coordinator/src/server/gate.rs`.)
#[derive(Clone, Copy, Default)]
pub struct RequireProtocol;

impl Interceptor for RequireProtocol {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
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
