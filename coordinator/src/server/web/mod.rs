//! The web side of `jetsweep serve`, on the same address as gRPC (HTTP/1.1 beside gRPC's HTTP/2):
//! the dashboard's pages and their JSON, and `/healthz` for HTTP probes. Assets are embedded in
//! the binary; the one chart library (uPlot, MIT) is vendored in `assets/` with its licence.
//!
//! With a token set (`serve --token`), every page and every JSON call asks for it — as a bearer
//! header, or as the cookie the login form sets — and nothing about a sweep is served without it.
//! Actions (cancel) are POSTs that also need the `x-jetsweep` header, which a cross-site form
//! cannot send.

mod api;

use axum::Router;
use axum::extract::{Form, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use crate::jobs;
use crate::server::Coordinator;

/// The cookie the login form sets.
const COOKIE: &str = "jetsweep_token";

/// A failed call, as HTTP: the status the gRPC side would give, and the message.
pub struct WebError(crate::Error);

impl From<crate::Error> for WebError {
    fn from(e: crate::Error) -> Self {
        WebError(e)
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let status = tonic::Status::from(self.0);
        let code = match status.code() {
            tonic::Code::NotFound => StatusCode::NOT_FOUND,
            tonic::Code::InvalidArgument => StatusCode::BAD_REQUEST,
            tonic::Code::Unauthenticated => StatusCode::UNAUTHORIZED,
            tonic::Code::PermissionDenied => StatusCode::FORBIDDEN,
            tonic::Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (
            code,
            axum::Json(serde_json::json!({ "error": status.message() })),
        )
            .into_response()
    }
}

/// The dashboard's routes and `/healthz`, for `coordinator`.
pub fn router(coordinator: Coordinator) -> Router {
    let guarded = Router::new()
        .route("/", get(|| page(include_str!("assets/index.html"))))
        .route(
            "/sweeps/{id}",
            get(|| page(include_str!("assets/sweep.html"))),
        )
        .route(
            "/workers",
            get(|| page(include_str!("assets/workers.html"))),
        )
        .route("/api/sweeps", get(api::sweeps))
        .route("/api/sweeps/{id}", get(api::sweep))
        .route("/api/sweeps/{id}/jobs", get(api::jobs))
        .route("/api/sweeps/{id}/results", get(results))
        .route("/api/sweeps/{id}/curves", get(api::curves))
        .route("/api/sweeps/{id}/stopping", get(api::stopping))
        .route("/api/sweeps/{id}/events", get(api::events))
        .route("/api/sweeps/{id}/cancel", post(cancel))
        .route("/api/workers", get(api::workers))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(
            coordinator.clone(),
            require_token,
        ));
    Router::new()
        .merge(guarded)
        .route("/healthz", get(healthz))
        .route("/login", get(login_page).post(login))
        .route("/assets/{name}", get(asset))
        .with_state(coordinator)
}

async fn page(html: &'static str) -> Html<&'static str> {
    Html(html)
}

/// The token a request carries: `Authorization: Bearer T`, or the login cookie.
fn presented(headers: &HeaderMap) -> Option<String> {
    if let Some(bearer) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        return Some(bearer.to_string());
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

async fn require_token(State(c): State<Coordinator>, request: Request, next: Next) -> Response {
    if c.auth().accepts(presented(request.headers()).as_deref()) {
        return next.run(request).await;
    }
    if request.uri().path().starts_with("/api/") {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(serde_json::json!({
                "error": "this coordinator requires a token: send `Authorization: Bearer TOKEN`, or log in at /login"
            })),
        )
            .into_response();
    }
    Redirect::to("/login").into_response()
}

async fn login_page() -> Html<&'static str> {
    Html(include_str!("assets/login.html"))
}

#[derive(Deserialize)]
struct Login {
    token: String,
}

async fn login(State(c): State<Coordinator>, Form(form): Form<Login>) -> Response {
    if !c.auth().required() || !c.auth().accepts(Some(&form.token)) {
        return (
            StatusCode::UNAUTHORIZED,
            Html("<p>Wrong token. <a href=\"/login\">Try again</a>.</p>"),
        )
            .into_response();
    }
    let secure = if c.serves_tls() { "; Secure" } else { "" };
    let cookie = format!(
        "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict{secure}",
        form.token
    );
    let mut response = Redirect::to("/").into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

/// 200 `ok` while the state file answers; 503 with the reason otherwise.
async fn healthz(State(c): State<Coordinator>) -> Response {
    match c.check_store().await {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
    }
}

async fn asset(Path(name): Path<String>) -> Response {
    // jetsweep's own files change with every release: revalidated; uPlot's are a fixed version.
    const OURS: &str = "no-cache";
    const VENDORED: &str = "max-age=86400";
    let (body, kind, cache): (&'static str, &str, &str) = match name.as_str() {
        "app.js" => (include_str!("assets/app.js"), "text/javascript", OURS),
        "style.css" => (include_str!("assets/style.css"), "text/css", OURS),
        "uPlot.iife.min.js" => (
            include_str!("assets/uPlot.iife.min.js"),
            "text/javascript",
            VENDORED,
        ),
        "uPlot.min.css" => (include_str!("assets/uPlot.min.css"), "text/css", VENDORED),
        "uPlot.LICENSE" => (include_str!("assets/uPlot.LICENSE"), "text/plain", VENDORED),
        _ => return (StatusCode::NOT_FOUND, "no such asset\n").into_response(),
    };
    (
        [(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, cache)],
        body,
    )
        .into_response()
}

/// The sweep's results: the same document as `jetsweep results --format json`.
async fn results(
    State(c): State<Coordinator>,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let (ended, aggregated) = c.aggregate_results(&id).await?;
    let page = crate::server::results_page(&aggregated, 0, usize::MAX, ended);
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        crate::client::render::json::document_text(&page, false),
    )
        .into_response())
}

/// Cancels the sweep (as `jetsweep cancel`). Needs the `x-jetsweep` header: a page's script sends
/// it, a form on another site cannot.
async fn cancel(
    State(c): State<Coordinator>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    if !headers.contains_key("x-jetsweep") {
        return Ok((
            StatusCode::FORBIDDEN,
            "send the x-jetsweep header (the dashboard's script does)\n",
        )
            .into_response());
    }
    let counts = c
        .write(move |tx, now| jobs::cancel_sweep(tx, &id, now))
        .await?;
    Ok(axum::Json(api::SweepJson::from(&counts)).into_response())
}

/// `/metrics`: Prometheus' text format (see [`crate::metrics`]).
async fn metrics(State(c): State<Coordinator>) -> Result<Response, WebError> {
    let since = c.now() - jetsweep_proto::limits::GONE_AFTER.as_millis() as i64;
    let counts = c
        .read(move |tx| crate::server::metrics::store_counts(tx, since))
        .await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        c.metrics().encode(counts),
    )
        .into_response())
}

/// The gRPC methods this server answers, as their paths name them.
const KNOWN_RPCS: &[&str] = &[
    "jetsweep.v1.SweepService/SubmitSweep",
    "jetsweep.v1.SweepService/GetSweep",
    "jetsweep.v1.SweepService/ListSweeps",
    "jetsweep.v1.SweepService/ListJobs",
    "jetsweep.v1.SweepService/WatchSweep",
    "jetsweep.v1.SweepService/GetResults",
    "jetsweep.v1.SweepService/GetCurves",
    "jetsweep.v1.SweepService/ListDecisions",
    "jetsweep.v1.SweepService/CancelSweep",
    "jetsweep.v1.SweepService/ListWorkers",
    "jetsweep.v1.WorkerService/Register",
    "jetsweep.v1.WorkerService/Heartbeat",
    "jetsweep.v1.WorkerService/LeaseJobs",
    "jetsweep.v1.WorkerService/ReportEpoch",
    "jetsweep.v1.WorkerService/CompleteJob",
    "jetsweep.v1.WorkerService/FailJob",
    "jetsweep.v1.WorkerService/FetchDataset",
    "jetsweep.v1.WorkerService/FetchCheckpoint",
    "grpc.health.v1.Health/Check",
    "grpc.health.v1.Health/Watch",
];

/// Counts every request for `/metrics`: gRPC calls by `Service/Method` and status code (from the
/// `grpc-status` header of a failed call; a call whose status travels in trailers succeeded), the
/// rest as `http` by HTTP status. Labels come from a fixed set, whatever path a client sends.
pub async fn count_requests(
    State(metrics): State<crate::server::metrics::Metrics>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    // Only methods that exist become labels: made-up paths must not grow the label set.
    let rpc = KNOWN_RPCS
        .iter()
        .find(|known| path.strip_prefix('/') == Some(**known))
        .map(|known| known.trim_start_matches("jetsweep.v1.").to_string());
    let response = next.run(request).await;
    let (rpc, code) = match rpc {
        Some(rpc) => {
            let code = response
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("0")
                .to_string();
            (rpc, code)
        }
        None => ("http".to_string(), response.status().as_u16().to_string()),
    };
    metrics.request(rpc, code);
    response
}

#[cfg(test)]
mod tests {
    /// Every method the protocol file declares is counted under its own name (a method left out
    /// would be counted as plain HTTP).
    #[test]
    fn every_rpc_of_the_protocol_is_a_known_label() {
        let proto = include_str!("../../../../proto/jetsweep.proto");
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
                super::KNOWN_RPCS.contains(&rpc.as_str()),
                "{rpc} is not counted"
            );
        }
    }
}
