//! The dashboard in a real browser: a coordinator and a worker run a small sweep; headless
//! Chromium loads the sweep's page while it runs and after it ends; the page must show the sweep,
//! its job counts and as many learning-curve points as the API has epochs. Screenshots are kept in
//! the build's temporary folder (`target/tmp/dashboard-*.png`) for a person to look at.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use jetsweep_coordinator::testkit::http_get;
use jetsweep_tests::cluster::*;
use jetsweep_tests::need;

/// Four jobs of a second or two each (100,000 jets, batch 64, 6 epochs).
const SWEEP: &str = "name = \"dash\"\ndataset = \"synthetic:100000\"\nlease_timeout_s = 30\n[defaults]\nmax_epochs = 6\nbatch_size = 64\n[grid]\nlearning_rate = [1e-3, 1e-4]\nseed = [0, 1]\n";

/// The page at `url` as headless Chromium leaves its DOM after 5 s of (virtual) time, and a
/// screenshot of it at `png`.
fn browse(chromium: &str, url: &str, png: &Path) -> String {
    let flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--virtual-time-budget=5000",
        "--window-size=1400,1800",
    ];
    // Output goes to files and only the browser itself is waited for: helper processes it starts
    // may outlive it holding whatever pipes it was given.
    let dom_file = png.with_extension("html");
    let run = |extra: &[String], out: &Path| {
        let status = Command::new(chromium)
            .args(flags)
            .args(extra)
            .arg(url)
            .stdout(std::fs::File::create(out).unwrap())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "chromium failed on {url}");
    };
    run(
        &[format!("--screenshot={}", png.display())],
        &png.with_extension("log"),
    );
    assert!(png.is_file(), "no screenshot of {url}");
    run(&["--dump-dom".to_string()], &dom_file);
    std::fs::read_to_string(&dom_file).unwrap()
}

/// Reads the sweep's event stream until an event carries epochs (at most 60 s); returns it.
fn first_event_with_epochs(url: &str, sweep: &str) -> serde_json::Value {
    use std::io::{BufRead, BufReader, Write};
    let addr = url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "GET /api/sweeps/{sweep}/events HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    for line in BufReader::new(s).lines() {
        let line = line.expect("the stream stays open until an event comes");
        if let Some(data) = line.strip_prefix("data: ") {
            let event: serde_json::Value = serde_json::from_str(data).unwrap();
            if event["epochs"].as_array().is_some_and(|e| !e.is_empty()) {
                return event;
            }
        }
    }
    panic!("the event stream ended without epochs");
}

/// The value of `data-NAME="..."` in the DOM.
fn data_attr(dom: &str, name: &str) -> Option<u64> {
    let key = format!("data-{name}=\"");
    let start = dom.find(&key)? + key.len();
    dom[start..].split('"').next()?.parse().ok()
}

fn epochs_in_api(url: &str, sweep: &str) -> u64 {
    let (status, body) = http_get(url, &format!("/api/sweeps/{sweep}/curves"), None);
    assert_eq!(status, 200, "{body}");
    let curves: serde_json::Value = serde_json::from_str(&body).unwrap();
    curves["jobs"]
        .as_object()
        .unwrap()
        .values()
        .map(|c| c.as_array().unwrap().len() as u64)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_a_running_and_a_finished_sweep_as_the_api_does() {
    let test = "the dashboard test";
    let Some(chromium) = need::or_skip(test, need::chromium()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let (_coordinator, url) = coordinator(dir.path(), "127.0.0.1:0", "dash");
    let id = submit(&url, SWEEP).await.sweep_id;
    let _worker = worker(dir.path(), &url, "w");
    assert_eq!(http_get(&url, "/healthz", None), (200, "ok\n".to_string()));

    // The page's live feed pushes epochs as they are reported.
    let pushed = tokio::task::spawn_blocking({
        let (url, id) = (url.clone(), id.clone());
        move || first_event_with_epochs(&url, &id)
    });

    // While it runs: the page shows the sweep, and the curves hold at least what the API had
    // just before (epochs only accumulate).
    wait_for(
        &url,
        &id,
        Duration::from_secs(120),
        "an epoch reported",
        |_, jobs| jobs.iter().any(|j| j.epochs_done >= 1),
    )
    .await;
    let before = epochs_in_api(&url, &id);
    let dom = browse(
        chromium,
        &format!("{url}/sweeps/{id}?live=0"),
        &shots.join("dashboard-running.png"),
    );
    assert!(dom.contains(&format!("Sweep {id}")), "{dom}");
    assert_eq!(data_attr(&dom, "total"), Some(4), "{dom}");
    let points = data_attr(&dom, "points").expect("curve points on the page");
    assert!(
        points >= before && before >= 1,
        "{points} points on the page, {before} in the API before"
    );

    let event = pushed.await.unwrap();
    let epochs = event["epochs"].as_array().expect("epochs in the event");
    assert!(!epochs.is_empty(), "{event}");
    assert_eq!(event["sweep"]["id"], id.as_str(), "{event}");

    // Finished: every number on the page equals the API's.
    wait_for(
        &url,
        &id,
        Duration::from_secs(180),
        "the sweep to finish",
        |s, _| s.done == 4,
    )
    .await;
    let dom = browse(
        chromium,
        &format!("{url}/sweeps/{id}?live=0"),
        &shots.join("dashboard-done.png"),
    );
    assert_eq!(
        (
            data_attr(&dom, "total"),
            data_attr(&dom, "done"),
            data_attr(&dom, "failed")
        ),
        (Some(4), Some(4), Some(0)),
        "{dom}"
    );
    assert_eq!(data_attr(&dom, "points"), Some(epochs_in_api(&url, &id)));
    assert_eq!(epochs_in_api(&url, &id), 4 * 6);
    assert_eq!(
        dom.matches("<tr data-job=").count(),
        4,
        "one table row per trial"
    );
    // The grid points' table: a row per point, the best one (chosen on validation) marked, as the API says.
    let (status, body) = http_get(&url, &format!("/api/sweeps/{id}/results"), None);
    assert_eq!(status, 200, "{body}");
    let results: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        dom.matches(" data-point=").count(),
        results["rows"].as_array().unwrap().len(),
        "{dom}"
    );
    let best = results["best"].as_u64().expect("a best point");
    assert!(
        dom.contains(&format!("<tr class=\"best\" data-point=\"{best}\">")),
        "{dom}"
    );
    let list = browse(
        chromium,
        &format!("{url}/"),
        &shots.join("dashboard-sweeps.png"),
    );
    assert!(list.contains(&format!("data-sweep=\"{id}\"")), "{list}");
    // The results download as CSV (as `jetsweep results --format csv`) and JSON from the page.
    assert!(
        dom.contains(&format!("href=\"/api/sweeps/{id}/results.csv\"")),
        "a CSV download link: {dom}"
    );
    let (status, csv) = http_get(&url, &format!("/api/sweeps/{id}/results.csv"), None);
    assert_eq!(status, 200, "{csv}");
    assert!(csv.starts_with("model,parameters,optimizer,"), "{csv}");
    assert_eq!(
        csv.lines().count(),
        1 + 2,
        "a header and a row per point: {csv}"
    );
    // A mistyped sweep address is a 404 page that says so, not a page waiting for the sweep.
    let (status, body) = http_get(&url, "/sweeps/nope-1", None);
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("No sweep named “nope-1”"), "{body}");
    let (status, body) = http_get(&url, "/sweeps/%3Cb%3Ex", None);
    assert_eq!(status, 404, "{body}");
    assert!(
        body.contains("&lt;b&gt;x") && !body.contains("<b>x"),
        "escaped: {body}"
    );
    let dom = browse(
        chromium,
        &format!("{url}/sweeps/nope-1"),
        &shots.join("dashboard-404.png"),
    );
    assert!(dom.contains("id=\"not-found\""), "{dom}");
}

/// With a token, nothing about a sweep is served without it; the health probe still answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_the_dashboard_asks_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let (_coordinator, url) = coordinator_env(
        dir.path(),
        "127.0.0.1:0",
        "token",
        &[],
        &[("JETSWEEP_TOKEN", "s3cret-s3cret-s3cret")],
    );
    assert_eq!(http_get(&url, "/healthz", None).0, 200);
    let (status, body) = http_get(&url, "/api/sweeps", None);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("requires a token"), "{body}");
    assert_eq!(http_get(&url, "/api/sweeps", Some("wrong")).0, 401);
    let (status, body) = http_get(&url, "/api/sweeps", Some("s3cret-s3cret-s3cret"));
    assert_eq!(status, 200, "{body}");
    let page: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (
            page["total"].as_u64(),
            page["sweeps"].as_array().map(Vec::len)
        ),
        (Some(0), Some(0))
    );
    // A page without the token sends the browser to the login form.
    assert_eq!(http_get(&url, "/", None).0, 303);
}

/// One raw HTTP/1.1 request to the coordinator at `url`: the status code of its answer (0 when the
/// connection closed without one).
fn raw_status(url: &str, request: &str) -> u16 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(url.trim_start_matches("http://")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer)
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

/// Malformed query strings and oversized or forged cookies are refused with a client error, and
/// the coordinator goes on serving.
#[test]
fn malformed_web_requests_are_refused_and_the_coordinator_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let (_coordinator, url) = coordinator_env(
        dir.path(),
        "127.0.0.1:0",
        "hostile-web",
        &[],
        &[("JETSWEEP_TOKEN", "s3cret-s3cret-s3cret")],
    );
    let host = url.trim_start_matches("http://");
    let auth = "Authorization: Bearer s3cret-s3cret-s3cret\r\n";
    for (request, refused) in [
        (
            format!(
                "GET /api/sweeps?from=abc HTTP/1.1\r\nHost: {host}\r\n{auth}Connection: close\r\n\r\n"
            ),
            400..=400,
        ),
        (
            format!(
                "GET /api/sweeps?limit=-1&from=99999999999999 HTTP/1.1\r\nHost: {host}\r\n{auth}Connection: close\r\n\r\n"
            ),
            400..=400,
        ),
        (
            format!(
                "GET /api/sweeps/x/jobs?from=%ZZ HTTP/1.1\r\nHost: {host}\r\n{auth}Connection: close\r\n\r\n"
            ),
            400..=400,
        ),
        // A 100 KB cookie: refused before anything reads it.
        (
            format!(
                "GET /api/sweeps HTTP/1.1\r\nHost: {host}\r\nCookie: jetsweep_session={}\r\nConnection: close\r\n\r\n",
                "a".repeat(100_000)
            ),
            400..=499,
        ),
        // A forged cookie is no token.
        (
            format!(
                "GET /api/sweeps HTTP/1.1\r\nHost: {host}\r\nCookie: jetsweep_session=guess; jetsweep_session=s3cre\r\nConnection: close\r\n\r\n"
            ),
            401..=401,
        ),
    ] {
        let status = raw_status(&url, &request);
        assert!(
            refused.contains(&status) || (status == 0 && request.len() > 50_000),
            "{} → {status}",
            &request[..request.len().min(120)]
        );
    }
    let (status, body) = http_get(&url, "/api/sweeps", Some("s3cret-s3cret-s3cret"));
    assert_eq!(status, 200, "still serving: {body}");
}

/// Six drawn points × two seeds, halved at epochs 1 and 3 of 4.
const HALVING: &str = "name = \"dash-halving\"\ndataset = \"synthetic:20000\"\nval_fraction = 0.2\n[defaults]\nmax_epochs = 4\nbatch_size = 64\n[search]\nmethod = \"random\"\npoints = 6\nsearch_seed = 5\n[search.space]\nlearning_rate = { log_uniform = [1e-4, 1e-1] }\n[search.stop]\nrule = \"halving\"\nmin_epochs = 1\neta = 3\n[grid]\nseed = [0, 1]\n";

/// A halving sweep's page shows its rung table in the browser with the numbers the API gives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_a_halving_sweeps_rung_table_as_the_api_does() {
    let Some(chromium) = need::or_skip("the rung table test", need::chromium()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let (_coordinator, url) = coordinator(dir.path(), "127.0.0.1:0", "dash-halving");
    let id = submit(&url, HALVING).await.sweep_id;
    let _worker = worker_with(dir.path(), &url, "w", &["--pack", "4"]);
    wait_for(
        &url,
        &id,
        Duration::from_secs(120),
        "the sweep to finish",
        |s, _| s.done + s.cancelled == s.total,
    )
    .await;
    let (status, body) = http_get(&url, &format!("/api/sweeps/{id}/stopping"), None);
    assert_eq!(status, 200, "{body}");
    let st: serde_json::Value = serde_json::from_str(&body).unwrap();
    let dom = browse(
        chromium,
        &format!("{url}/sweeps/{id}?live=0"),
        &shots.join("dashboard-halving.png"),
    );
    assert!(
        dom.contains("<section id=\"stopping-section\">"),
        "the rung table is shown: {dom}"
    );
    assert!(
        dom.contains(&format!(
            "trial-epochs trained: {} of the {} a full run takes",
            st["trial_epochs"], st["full_epochs"]
        )),
        "{dom}"
    );
    let rungs = st["rungs"].as_array().unwrap();
    assert!(!rungs.is_empty(), "{st}");
    for r in rungs {
        let row = format!(
            "<tr><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>",
            r["rung"], r["judged"], r["went_on"], r["stopped"], r["paused"]
        );
        assert!(dom.contains(&row), "{row} not in the page: {dom}");
    }
}

/// Three model sizes (jsc-tiny, jsc-toy, jsc-s) × two seeds, three epochs each.
const SIZES: &str = "name = \"dash-sizes\"\ndataset = \"synthetic:20000\"\nval_fraction = 0.2\n[defaults]\nmax_epochs = 3\nbatch_size = 64\nlearning_rate = 3e-3\n[grid]\nmodel = [\"jsc-tiny\", \"jsc-toy\", \"jsc-s\"]\nseed = [0, 1]\n";

/// A sweep of several model sizes: the points table names each model's parameters, and a chart
/// plots every point's accuracy against its size with the Pareto front marked, as the API's
/// numbers make it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_plots_accuracy_against_size_with_the_pareto_front() {
    let Some(chromium) = need::or_skip("the size chart test", need::chromium()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let (_coordinator, url) = coordinator(dir.path(), "127.0.0.1:0", "dash-sizes");
    let id = submit(&url, SIZES).await.sweep_id;
    let _worker = worker(dir.path(), &url, "w");
    wait_for(
        &url,
        &id,
        Duration::from_secs(120),
        "the sweep to finish",
        |s, _| s.done == s.total,
    )
    .await;
    let (status, body) = http_get(&url, &format!("/api/sweeps/{id}/results"), None);
    assert_eq!(status, 200, "{body}");
    let results: serde_json::Value = serde_json::from_str(&body).unwrap();
    let rows = results["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    // The front: by parameters, each point more accurate than every smaller one.
    let mut by_size: Vec<(u64, f64)> = rows
        .iter()
        .map(|r| {
            (
                r["parameters"].as_u64().expect("a parameter count"),
                r["mean_best_test_acc"].as_f64().unwrap(),
            )
        })
        .collect();
    by_size.sort_by_key(|&(n, _)| n);
    let mut front = 0;
    let mut best = f64::NEG_INFINITY;
    for (_, acc) in &by_size {
        if *acc > best {
            front += 1;
            best = *acc;
        }
    }
    let dom = browse(
        chromium,
        &format!("{url}/sweeps/{id}?live=0"),
        &shots.join("dashboard-sizes.png"),
    );
    assert!(
        dom.contains("<div class=\"chart\" id=\"size-chart\">"),
        "{dom}"
    );
    assert_eq!(dom.matches("class=\"on-front\"").count(), front, "{dom}");
    assert_eq!(
        dom.matches("class=\"on-front\"").count() + dom.matches("class=\"off-front\"").count(),
        3,
        "{dom}"
    );
    for (n, _) in &by_size {
        assert!(
            dom.contains(&format!("<td class=\"num\">{n}</td>")),
            "{n} parameters in the points table: {dom}"
        );
    }
}

/// Fifty trials: ten grid points (learning rate × batch size) × five seeds, four epochs each.
const FIFTY: &str = "name = \"dash-fifty\"\ndataset = \"synthetic:20000\"\nval_fraction = 0.2\n[defaults]\nmax_epochs = 4\n[grid]\nlearning_rate = [1e-2, 3e-3, 1e-3, 3e-4, 1e-4]\nbatch_size = [64, 256]\nseed = [0, 1, 2, 3, 4]\n";

/// At the size of a real sweep: the curves are drawn per grid point (one legend entry each, labelled
/// by what the sweep varies, with its seed count), each trial has a page (configuration, attempts
/// with their worker, a timeline, an epoch table, its curve against its point's), a trial the
/// sweep does not have is a 404 page, and the workers page tells a worker that left from one alive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifty_trial_sweep_draws_one_curve_per_point_and_each_trial_has_a_page() {
    let Some(chromium) = need::or_skip("the fifty-trial dashboard test", need::chromium()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let (_coordinator, url) = coordinator(dir.path(), "127.0.0.1:0", "dash-fifty");
    let id = submit(&url, FIFTY).await.sweep_id;
    let _worker = worker_with(dir.path(), &url, "w", &["--pack", "16"]);
    // A second worker that leaves once idle: the workers page shows it as left.
    let mut leaver = worker_with(
        dir.path(),
        &url,
        "leaver",
        &["--pack", "16", "--exit-when-idle", "1"],
    );
    wait_for(
        &url,
        &id,
        Duration::from_secs(240),
        "the sweep to finish",
        |s, _| s.done == 50,
    )
    .await;

    let dom = browse(
        chromium,
        &format!("{url}/sweeps/{id}?live=0"),
        &shots.join("dashboard-fifty.png"),
    );
    assert_eq!(
        data_attr(&dom, "groups"),
        Some(10),
        "one curve per grid point: {dom}"
    );
    assert_eq!(
        dom.matches("class=\"legend-item\"").count(),
        10,
        "one legend for all four charts: {dom}"
    );
    for label in ["batch 64 · lr 1e-2", "batch 256 · lr 1e-4"] {
        assert!(dom.contains(label), "legend entry {label:?}: {dom}");
    }
    assert_eq!(dom.matches("(5 seeds)").count(), 10, "{dom}");
    assert_eq!(
        data_attr(&dom, "points"),
        Some(50 * 4),
        "every epoch read: {dom}"
    );
    assert_eq!(dom.matches("<tr data-job=").count(), 50);

    // One trial's page.
    let (status, body) = http_get(&url, &format!("/api/sweeps/{id}/jobs"), None);
    assert_eq!(status, 200, "{body}");
    let jobs: serde_json::Value = serde_json::from_str(&body).unwrap();
    let job = &jobs["jobs"][7];
    let job_id = job["id"].as_str().unwrap();
    assert!(
        dom.contains(&format!("href=\"/sweeps/{id}/trials/{job_id}\"")),
        "the trials table links each trial's page: {dom}"
    );
    let (status, body) = http_get(&url, &format!("/api/sweeps/{id}/trials/{job_id}"), None);
    assert_eq!(status, 200, "{body}");
    let trial: serde_json::Value = serde_json::from_str(&body).unwrap();
    let point = trial["point"].as_array().unwrap();
    assert_eq!(point.len(), 5, "its point's five seeds: {body}");
    assert!(
        point
            .iter()
            .all(|p| p["learning_rate"] == job["learning_rate"]
                && p["batch_size"] == job["batch_size"]),
        "{body}"
    );
    assert!(
        point
            .iter()
            .all(|p| p["curve"].as_array().unwrap().len() == 4),
        "{body}"
    );
    let attempts = trial["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{body}");
    assert_eq!(attempts[0]["outcome"], "done", "{body}");
    assert_eq!(attempts[0]["worker"], job["worker"], "{body}");
    assert!(attempts[0]["pack_size"].as_u64().unwrap() >= 1, "{body}");
    let page = browse(
        chromium,
        &format!("{url}/sweeps/{id}/trials/{job_id}?live=0"),
        &shots.join("dashboard-trial.png"),
    );
    assert!(page.contains(&job_id[..12]), "{page}");
    assert_eq!(page.matches("<tr data-attempt=").count(), 1, "{page}");
    assert_eq!(page.matches("<tr data-epoch=").count(), 4, "{page}");
    assert_eq!(
        page.matches("class=\"best\"").count(),
        1,
        "the best epoch marked: {page}"
    );
    assert_eq!(
        page.matches("class=\"attempt\"").count(),
        1,
        "a timeline bar: {page}"
    );
    assert_eq!(data_attr(&page, "points"), Some(4), "{page}");
    assert!(page.contains(&format!("seed {}", job["seed"])), "{page}");
    let (status, body) = http_get(&url, &format!("/sweeps/{id}/trials/nope"), None);
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("No trial “nope”"), "{body}");
    let (status, _) = http_get(&url, &format!("/api/sweeps/{id}/trials/nope"), None);
    assert_eq!(status, 404);
    // A hostile trial id in the address is shown escaped on the 404 page.
    let (status, body) = http_get(&url, &format!("/sweeps/{id}/trials/%3Cscript%3Ex"), None);
    assert_eq!(status, 404, "{body}");
    assert!(
        body.contains("&lt;script&gt;x") && !body.contains("<script>x"),
        "escaped: {body}"
    );

    // The workers page: the one that left says so.
    let start = std::time::Instant::now();
    while leaver.child.try_wait().unwrap().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the idle worker never left"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let page = browse(
        chromium,
        &format!("{url}/workers"),
        &shots.join("dashboard-workers.png"),
    );
    assert_eq!(page.matches(">left</td>").count(), 1, "{page}");
    assert_eq!(page.matches(">alive</td>").count(), 1, "{page}");
}
