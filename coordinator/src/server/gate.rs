//! The one gate every request to the main port passes, gRPC and web alike, before any handler:
//!
//! - **transport**: a gRPC path (`/jetsweep.v1.…`, `/grpc.…`) is answered only over HTTP/2, with
//!   `content-type: application/grpc…` and no `Origin` — a web page can send none of these, so no
//!   site a user visits can call the services (tonic alone accepts gRPC over HTTP/1.1 with any
//!   content type, a "simple" cross-site request);
//! - **web origin**: a dashboard request whose `Origin` is not the page's own host is refused; an
//!   open coordinator (no credentials) answers web requests only for an IP address or `localhost`
//!   in `Host`, so a rebound DNS name cannot read it;
//! - **who**: the caller is named by `authorization: Bearer TOKEN` (gRPC metadata is that header)
//!   or the dashboard's session cookie ([`super::sessions`]), and put in the request's extensions
//!   as a [`Caller`] for the handlers (a user's cancel is limited to its own sweeps there);
//! - **what**: each route's [`Verb`] (the table [`verb_of`]) against the caller's role.
//!
//! Refusals say what to do: gRPC ones as a gRPC status (UNAUTHENTICATED, PERMISSION_DENIED), web
//! ones as 401/403 JSON for `/api/` and `/metrics`, a redirect to the login page for pages.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Version, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

use crate::credentials::{Caller, Refused, Verb};
use crate::server::Coordinator;

/// The gRPC methods this server answers and what each does, as their paths name them.
pub const RPCS: &[(&str, Verb)] = &[
    ("jetsweep.v1.SweepService/SubmitSweep", Verb::Submit),
    ("jetsweep.v1.SweepService/GetSweep", Verb::Read),
    ("jetsweep.v1.SweepService/ListSweeps", Verb::Read),
    ("jetsweep.v1.SweepService/ListJobs", Verb::Read),
    ("jetsweep.v1.SweepService/WatchSweep", Verb::Read),
    ("jetsweep.v1.SweepService/GetResults", Verb::Read),
    ("jetsweep.v1.SweepService/GetCurves", Verb::Read),
    ("jetsweep.v1.SweepService/ListDecisions", Verb::Read),
    ("jetsweep.v1.SweepService/CancelSweep", Verb::Cancel),
    ("jetsweep.v1.SweepService/ListWorkers", Verb::Read),
    ("jetsweep.v1.SweepService/ListAudit", Verb::Read),
    (
        "jetsweep.v1.SweepService/InvalidateWorker",
        Verb::Administer,
    ),
    ("jetsweep.v1.SweepService/GetModel", Verb::Read),
    // Deleting is cancelling's permission: admins, and users for their own sweeps.
    ("jetsweep.v1.SweepService/DeleteSweep", Verb::Cancel),
    ("jetsweep.v1.WorkerService/Register", Verb::Work),
    ("jetsweep.v1.WorkerService/Heartbeat", Verb::Work),
    ("jetsweep.v1.WorkerService/LeaseJobs", Verb::Work),
    ("jetsweep.v1.WorkerService/ReportEpoch", Verb::Work),
    ("jetsweep.v1.WorkerService/CompleteJob", Verb::Work),
    ("jetsweep.v1.WorkerService/FailJob", Verb::Work),
    ("jetsweep.v1.WorkerService/FetchDataset", Verb::Work),
    ("jetsweep.v1.WorkerService/FetchCheckpoint", Verb::Work),
    ("grpc.health.v1.Health/Check", Verb::Open),
    ("grpc.health.v1.Health/Watch", Verb::Open),
];

/// Whether `path` is a gRPC call's (a service's package names it).
pub fn is_grpc(path: &str) -> bool {
    path.starts_with("/jetsweep.") || path.starts_with("/grpc.")
}

/// What a request to `path` does. Unknown paths need Read: whoever may not read learns nothing,
/// not even that a path does not exist.
pub fn verb_of(method: &Method, path: &str) -> Verb {
    if is_grpc(path) {
        let rpc = path.trim_start_matches('/');
        return RPCS
            .iter()
            .find(|(known, _)| *known == rpc)
            .map_or(Verb::Read, |(_, verb)| *verb);
    }
    match path {
        "/healthz" | "/login" | "/logout" => Verb::Open,
        _ if path.starts_with("/assets/") => Verb::Open,
        _ if *method == Method::POST
            && path.starts_with("/api/sweeps/")
            && path.ends_with("/cancel") =>
        {
            Verb::Cancel
        }
        _ => Verb::Read,
    }
}

/// The token a request carries: `authorization: Bearer T`.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

/// Whether `host` (a Host header: name or address, maybe a port) is an IP address or localhost.
fn is_address_or_localhost(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        return rest
            .split(']')
            .next()
            .is_some_and(|a| a.parse::<std::net::Ipv6Addr>().is_ok());
    } else {
        host.rsplit_once(':').map_or(host, |(name, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                name
            } else {
                host
            }
        })
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name.parse::<std::net::Ipv4Addr>().is_ok()
        || name == "localhost"
        || name.ends_with(".localhost")
}

fn grpc_refusal(status: tonic::Status) -> Response {
    status.into_http::<Body>()
}

fn web_refusal(code: StatusCode, message: &str) -> Response {
    (code, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

/// The gate (see the module's documentation). Layered over the whole router, gRPC included.
pub async fn gate(
    State(c): State<std::sync::Arc<Coordinator>>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_string();
    let headers = request.headers();
    let grpc = is_grpc(&path);
    if grpc {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if request.version() != Version::HTTP_2
            || !content_type.starts_with("application/grpc")
            || headers.contains_key(header::ORIGIN)
        {
            return (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "gRPC calls come over HTTP/2 with content-type application/grpc, and not from a web page\n",
            )
                .into_response();
        }
    }
    let verb = verb_of(request.method(), &path);
    if verb == Verb::Open || (path == "/metrics" && c.metrics_public()) {
        // Health checks, assets and the login form tell nothing and change nothing.
        return next.run(request).await;
    }
    if !grpc && let Some(refused) = web_origin_refusal(&c, &request) {
        return refused;
    }
    let session = if grpc {
        None
    } else {
        super::sessions::presented(headers).and_then(|id| c.sessions().caller(&id, c.now()))
    };
    let identified = match session {
        Some(caller) => Ok(caller),
        None => c.credentials().identify(bearer(headers)),
    };
    let caller = match identified {
        Ok(caller) => caller,
        Err(refused) => return unauthenticated(grpc, &path, refused),
    };
    if !caller.role.may(verb) {
        let message = format!(
            "credential {:?} (role {}) may not {}",
            caller.name,
            caller.role,
            verb.describe()
        );
        tracing::info!(caller = %caller.name, role = %caller.role, path = %path, "call refused: not the role's");
        return if grpc {
            grpc_refusal(tonic::Status::permission_denied(message))
        } else {
            web_refusal(StatusCode::FORBIDDEN, &message)
        };
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}

/// A web request from another site's page, or (on an open coordinator) for a host name that
/// may be a rebound DNS name: refused, with the reason.
fn web_origin_refusal(c: &Coordinator, request: &Request) -> Option<Response> {
    let headers = request.headers();
    // HTTP/1.1 names the host in `Host`, HTTP/2 in the request's authority.
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()))
        .unwrap_or("");
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let own = origin
            .split_once("://")
            .is_some_and(|(scheme, rest)| matches!(scheme, "http" | "https") && rest == host);
        if !own {
            return Some(web_refusal(
                StatusCode::FORBIDDEN,
                "a request from another site's page (its Origin is not this dashboard's); open the dashboard itself",
            ));
        }
    }
    if !c.credentials().required() && !host.is_empty() && !is_address_or_localhost(host) {
        return Some(web_refusal(
            StatusCode::FORBIDDEN,
            "this coordinator has no credentials, so its dashboard answers only at an IP address or localhost (a host name could be rebound by a web page's DNS): open it by address, or start it with --token or --tokens",
        ));
    }
    None
}

fn unauthenticated(grpc: bool, path: &str, refused: Refused) -> Response {
    let message = match refused {
        Refused::Missing => "this coordinator requires a token: pass --token or set JETSWEEP_TOKEN",
        Refused::Unknown => {
            "unknown token: use one the coordinator accepts (--token, or a credential of its tokens file)"
        }
    };
    if grpc {
        return grpc_refusal(tonic::Status::unauthenticated(message));
    }
    if path.starts_with("/api/") || path == "/metrics" {
        let message =
            format!("{message} (send `Authorization: Bearer TOKEN`, or log in at /login)");
        return web_refusal(StatusCode::UNAUTHORIZED, &message);
    }
    Redirect::to("/login").into_response()
}

/// The caller the gate put in a request's extensions (`found`), or the anonymous admin where no
/// gate ran (a service called directly, in tests).
pub fn caller_of(found: Option<&Caller>) -> Caller {
    found.cloned().unwrap_or_else(Caller::anonymous)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rpc_of_the_protocol_has_a_verb() {
        let proto = include_str!("../../../proto/jetsweep.proto");
        let mut service = "";
        let mut declared = Vec::new();
        for line in proto.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("service ") {
                service = rest.trim_end_matches('{').trim();
            } else if let Some(rest) = line.strip_prefix("rpc ") {
                let method = rest.split('(').next().unwrap().trim();
                declared.push(format!("jetsweep.v1.{service}/{method}"));
            }
        }
        assert!(declared.len() > 10, "{declared:?}");
        for rpc in declared {
            assert!(
                RPCS.iter().any(|(known, _)| *known == rpc),
                "{rpc} has no verb"
            );
        }
    }

    #[test]
    fn routes_map_to_their_verbs() {
        let get = Method::GET;
        assert_eq!(verb_of(&get, "/healthz"), Verb::Open);
        assert_eq!(verb_of(&get, "/assets/app.js"), Verb::Open);
        assert_eq!(verb_of(&get, "/metrics"), Verb::Read);
        assert_eq!(verb_of(&get, "/api/sweeps/x/cancel"), Verb::Read);
        assert_eq!(verb_of(&Method::POST, "/api/sweeps/x/cancel"), Verb::Cancel);
        assert_eq!(verb_of(&get, "/nope"), Verb::Read);
        assert_eq!(verb_of(&get, "/jetsweep.v1.SweepService/Nope"), Verb::Read);
        assert_eq!(
            verb_of(&Method::POST, "/jetsweep.v1.WorkerService/LeaseJobs"),
            Verb::Work
        );
    }

    #[test]
    fn only_addresses_and_localhost_pass_an_open_coordinators_host_check() {
        for ok in [
            "127.0.0.1:7070",
            "10.1.2.3",
            "localhost:80",
            "LOCALHOST",
            "a.localhost:9",
            "[::1]:7070",
            "[fe80::1]",
        ] {
            assert!(is_address_or_localhost(ok), "{ok}");
        }
        for bad in [
            "evil.example:7070",
            "127.0.0.1.nip.io",
            "localhost.evil.com",
            "[evil]:1",
            "",
        ] {
            assert!(!is_address_or_localhost(bad), "{bad}");
        }
    }
}
