//! The web side of `jetsweep serve`, on the same address as gRPC (HTTP/1.1 beside gRPC's HTTP/2):
//! the dashboard's pages and their JSON, and `/healthz` for HTTP probes. Assets are embedded in
//! the binary; the one chart library (uPlot, MIT) is vendored in `assets/` with its licence.
//!
//! Who may see and do what is the gate's ([`super::gate`]): with credentials, every page and JSON
//! call needs one — a bearer header, or the session cookie the login form sets ([`super::sessions`])
//! — and a role that may. Actions (cancel) are POSTs that also need the `x-jetsweep` header, which
//! a cross-site form cannot send.

mod api;

use axum::Router;
use axum::extract::{Extension, Form, FromRequest, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use crate::credentials::Caller;
use crate::server::Coordinator;

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
    Router::new()
        .route("/", get(|| page(PAGES.index)))
        .route("/sweeps/{id}", get(sweep_page))
        .route("/sweeps/{id}/trials/{job}", get(trial_page))
        .route("/workers", get(|| page(PAGES.workers)))
        .route("/api/sweeps", get(api::sweeps))
        .route("/api/sweeps/{id}", get(api::sweep))
        .route("/api/sweeps/{id}/jobs", get(api::jobs))
        .route("/api/sweeps/{id}/results", get(results))
        .route("/api/sweeps/{id}/results.csv", get(results_csv))
        .route("/api/sweeps/{id}/curves", get(api::curves))
        .route("/api/sweeps/{id}/trials/{job}", get(api::trial))
        .route("/api/sweeps/{id}/stopping", get(api::stopping))
        .route("/api/sweeps/{id}/events", get(api::events))
        .route("/api/sweeps/{id}/cancel", post(cancel))
        .route("/api/workers", get(api::workers))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/assets/{name}", get(asset))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(coordinator)
}

/// A sweep's page; for a sweep there is none of, a 404 page that says so (not a page that
/// waits for it).
async fn sweep_page(State(c): State<Coordinator>, Path(id): Path<String>) -> Response {
    let lookup = id.clone();
    match c.read(move |tx| crate::jobs::sweep_head(tx, &lookup)).await {
        Ok(_) => Html(PAGES.sweep).into_response(),
        Err(crate::Error::NotFound(_)) => not_found(
            &format!("No sweep named “{}”", shown(&id)),
            "This coordinator has no such sweep (a sweep's id is its name and a number, as <code>jetsweep status</code> lists them). <a href=\"/\">All sweeps</a>.",
        ),
        Err(e) => WebError::from(e).into_response(),
    }
}

/// One trial's page; a 404 page when the sweep has no such trial.
async fn trial_page(
    State(c): State<Coordinator>,
    Path((id, job)): Path<(String, String)>,
) -> Response {
    let (sweep, trial) = (id.clone(), job.clone());
    match c
        .read(move |tx| crate::jobs::is_trial_of(tx, &sweep, &trial))
        .await
    {
        Ok(true) => Html(PAGES.trial).into_response(),
        Ok(false) | Err(crate::Error::NotFound(_)) => not_found(
            &format!("No trial “{}” in sweep “{}”", shown(&job), shown(&id)),
            &format!(
                "The sweep has no such trial (a trial's id is its job id, as the sweep's page and <code>jetsweep status</code> list them). <a href=\"/sweeps/{}\">The sweep</a>.",
                shown(&id)
            ),
        ),
        Err(e) => WebError::from(e).into_response(),
    }
}

/// An id from an address as a page may show it: escaped, at most 100 characters.
fn shown(id: &str) -> String {
    crate::client::report::esc(&id.chars().take(100).collect::<String>())
}

/// A 404 page: `title` and `message` (HTML the caller escaped).
fn not_found(title: &str, message: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        Html(format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>jetsweep · not found</title>\n<link rel=\"stylesheet\" href=\"/assets/style.css\"></head>\n<body><header><b>jetsweep</b><a href=\"/\">sweeps</a><a href=\"/workers\">workers</a></header>\n<main><h1>{title}</h1><p id=\"not-found\">{message}</p></main></body></html>\n"
        )),
    )
        .into_response()
}

async fn page(html: &'static str) -> Html<&'static str> {
    Html(html)
}

/// The dashboard's pages, each with one inline script.
struct Pages {
    index: &'static str,
    sweep: &'static str,
    trial: &'static str,
    workers: &'static str,
}

const PAGES: Pages = Pages {
    index: include_str!("assets/index.html"),
    sweep: include_str!("assets/sweep.html"),
    trial: include_str!("assets/trial.html"),
    workers: include_str!("assets/workers.html"),
};

/// The inline `<script>` blocks of `html`, as written.
fn inline_scripts(html: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find("<script>") {
        let after = &rest[start + "<script>".len()..];
        let Some(end) = after.find("</script>") else {
            break;
        };
        out.push(&after[..end]);
        rest = &after[end..];
    }
    out
}

/// The Content-Security-Policy of every dashboard response: scripts only from this origin and the
/// pages' own inline blocks (by hash), no framing, no plugins, forms and fetches to this origin.
fn content_security_policy() -> &'static str {
    static POLICY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    POLICY.get_or_init(|| {
        use sha2::{Digest, Sha256};
        let hashes: Vec<String> = [PAGES.index, PAGES.sweep, PAGES.trial, PAGES.workers]
            .iter()
            .flat_map(|html| inline_scripts(html))
            .map(|script| {
                let digest = Sha256::digest(script.as_bytes());
                format!("'sha256-{}'", crate::credentials::base64(&digest))
            })
            .collect();
        format!(
            "default-src 'self'; script-src 'self' {}; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
            hashes.join(" ")
        )
    })
}

/// Security headers on every dashboard response: the CSP above, no MIME sniffing, no framing
/// (for browsers without frame-ancestors), no referrer leaving the page.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(content_security_policy()) {
        headers.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_allows_each_pages_inline_script_by_its_hash() {
        for html in [PAGES.index, PAGES.sweep, PAGES.trial, PAGES.workers] {
            assert_eq!(inline_scripts(html).len(), 1, "one inline script per page");
        }
        let policy = content_security_policy();
        assert_eq!(policy.matches("'sha256-").count(), 4, "{policy}");
        assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    }
}

/// The login form; or, with `?token=T` (the link `jetsweep run` prints, as Jupyter's), a sign-in
/// that lands on `next` (a path on this server).
async fn login_page(State(c): State<Coordinator>, request: Request) -> Response {
    let Ok(Query(link)) = Query::<LoginLink>::try_from_uri(request.uri()) else {
        return (StatusCode::BAD_REQUEST, Html("<p>Bad login link.</p>")).into_response();
    };
    match link.token {
        Some(token) => {
            let next = link
                .next
                .as_deref()
                .filter(|n| is_local_path(n))
                .unwrap_or("/");
            sign_in(&c, peer_ip(request.extensions()), &token, next)
        }
        _ => Html(include_str!("assets/login.html")).into_response(),
    }
}

#[derive(Deserialize)]
struct Login {
    token: String,
}

#[derive(Deserialize)]
struct LoginLink {
    token: Option<String>,
    next: Option<String>,
}

/// A path on this server (not `//host` or `/\\host`, which browsers take as another site).
fn is_local_path(next: &str) -> bool {
    next.starts_with('/') && !next.starts_with("//") && !next.contains('\\')
}

/// The client's address, as the server's connection saw it (plaintext or TLS).
pub(super) fn peer_ip(extensions: &axum::http::Extensions) -> Option<std::net::IpAddr> {
    use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
    extensions
        .get::<TcpConnectInfo>()
        .and_then(|i| i.remote_addr())
        .or_else(|| {
            extensions
                .get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(|i| i.get_ref().remote_addr())
        })
        .map(|a| a.ip())
}

/// The login form: a token in, a session cookie out (the token is never stored in the browser).
/// Failed attempts from one address back off (see [`super::sessions`]).
async fn login(State(c): State<Coordinator>, request: Request) -> Response {
    let address = peer_ip(request.extensions());
    let Ok(Form(form)) = Form::<Login>::from_request(request, &c).await else {
        return (StatusCode::BAD_REQUEST, Html("<p>Send the login form.</p>")).into_response();
    };
    sign_in(&c, address, &form.token, "/")
}

/// Checks `token` (failures from one address back off), opens a session and sends the browser to
/// `next` with its cookie.
fn sign_in(
    c: &Coordinator,
    address: Option<std::net::IpAddr>,
    token: &str,
    next: &str,
) -> Response {
    let now = c.now();
    if let Some(address) = address {
        let wait = c.sessions().wait_ms(address, now);
        if wait > 0 {
            let mut response = (
                StatusCode::TOO_MANY_REQUESTS,
                Html(format!(
                    "<p>Too many wrong tokens from this address: try again in {} s. <a href=\"/login\">Back</a>.</p>",
                    (wait + 999) / 1000
                )),
            )
                .into_response();
            if let Ok(v) = HeaderValue::from_str(&((wait + 999) / 1000).to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return response;
        }
    }
    let caller = match c.credentials().identify(Some(token.trim())) {
        Ok(caller) if c.credentials().required() => caller,
        _ => {
            if let Some(address) = address {
                c.sessions().failed(address, now);
            }
            tracing::info!(client = ?address, "dashboard login refused: unknown token");
            return (
                StatusCode::UNAUTHORIZED,
                Html("<p>Wrong token. <a href=\"/login\">Try again</a>.</p>"),
            )
                .into_response();
        }
    };
    if let Some(address) = address {
        c.sessions().succeeded(address);
    }
    let name = caller.name.clone();
    let session = match c.sessions().open(caller, now) {
        Ok(session) => session,
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
    };
    tracing::info!(caller = %name, client = ?address, "dashboard login");
    let secure = if c.serves_tls() { "; Secure" } else { "" };
    let cookie = format!(
        "{}={session}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        super::sessions::COOKIE,
        super::sessions::SESSION_TTL_MS / 1000
    );
    let mut response = Redirect::to(next).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

/// Ends the session the cookie names and clears the cookie.
async fn logout(State(c): State<Coordinator>, headers: HeaderMap) -> Response {
    if let Some(id) = super::sessions::presented(&headers) {
        c.sessions().close(&id);
    }
    let mut response = Redirect::to("/login").into_response();
    let cleared = format!(
        "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
        super::sessions::COOKIE
    );
    if let Ok(v) = HeaderValue::from_str(&cleared) {
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
/// The results as CSV, one row per grid point (what `jetsweep results ID --format csv` prints),
/// as a file to download.
async fn results_csv(
    State(c): State<Coordinator>,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let (ended, aggregated) = c.aggregate_results(&id).await?;
    let page = crate::server::results_page(&aggregated, 0, usize::MAX, ended);
    let file: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file}-results.csv\""),
            ),
        ],
        crate::client::render::results::render(&page, crate::client::render::results::Format::Csv),
    )
        .into_response())
}

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
    caller: Option<Extension<Caller>>,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    if !headers.contains_key("x-jetsweep") {
        return Ok((
            StatusCode::FORBIDDEN,
            "send the x-jetsweep header (the dashboard's script does)\n",
        )
            .into_response());
    }
    let caller = caller.map_or_else(Caller::anonymous, |Extension(c)| c);
    let (counts, _) = c.cancel(caller, id).await?;
    Ok(axum::Json(api::SweepJson::from(&counts)).into_response())
}

/// `/metrics`: OpenMetrics for a scraper that asks for it in `Accept` (Prometheus does), the
/// classic text format 0.0.4 otherwise (see [`crate::server::metrics`]).
async fn metrics(State(c): State<Coordinator>, headers: HeaderMap) -> Result<Response, WebError> {
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    let since = c.now() - jetsweep_proto::limits::GONE_AFTER.as_millis() as i64;
    let counts = c
        .read(move |tx| crate::server::metrics::store_counts(tx, since))
        .await?;
    let content_type = if openmetrics {
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    } else {
        "text/plain; version=0.0.4; charset=utf-8"
    };
    Ok((
        [(header::CONTENT_TYPE, content_type)],
        c.metrics().encode(counts, openmetrics),
    )
        .into_response())
}

/// Counts every request for `/metrics`: gRPC calls by `Service/Method` and status code (from the
/// `grpc-status` header of a failed call; a call whose status travels in trailers succeeded), the
/// rest as `http` by HTTP status. Labels come from a fixed set, whatever path a client sends.
pub async fn count_requests(
    State(metrics): State<std::sync::Arc<crate::server::metrics::Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    // Only methods that exist become labels: made-up paths must not grow the label set.
    let rpc = crate::server::gate::RPCS
        .iter()
        .find(|(known, _)| path.strip_prefix('/') == Some(*known))
        .map(|(known, _)| known.trim_start_matches("jetsweep.v1.").to_string());
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
