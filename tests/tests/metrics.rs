//! `/metrics` as Prometheus reads it: `promtool check metrics` passes on the text format, and a
//! real `prometheus` server scrapes the coordinator (`up` is 1, the job counts arrive). Without
//! credentials the endpoint answers 401 (a scraper's error, not the login page), unless the
//! coordinator was started with `--metrics-public`.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use jetsweep_coordinator::testkit::{http_get, sweeps::QUICK};
use jetsweep_tests::cluster::*;
use jetsweep_tests::need;

const TOKEN: &str = "metrics-token-0123456789";

/// A port free on loopback now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The first sample value of a Prometheus instant query's answer, if any.
fn query(prometheus: &str, expr: &str) -> Option<f64> {
    let (status, body) = http_get(
        prometheus,
        &format!(
            "/api/v1/query?query={}",
            expr.replace('"', "%22")
                .replace('{', "%7B")
                .replace('}', "%7D")
        ),
        None,
    );
    if status != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_passes_the_exposition_and_prometheus_scrapes_it() {
    let test = "the Prometheus test";
    let Some(promtool) = need::or_skip(test, need::prometheus_tool("promtool")) else {
        return;
    };
    let Some(prometheus) = need::or_skip(test, need::prometheus_tool("prometheus")) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (_coordinator, url) = coordinator(dir.path(), "127.0.0.1:0", "prom");
    let id = submit(&url, QUICK).await.sweep_id;
    let _worker = worker(dir.path(), &url, "w");
    wait_for(&url, &id, Duration::from_secs(120), "done", |s, _| {
        s.done == 8
    })
    .await;

    // The text format (no Accept header) passes promtool's checks.
    let (status, text) = http_get(&url, "/metrics", None);
    assert_eq!(status, 200, "{text}");
    let mut check = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics:\n{}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // A real server scrapes it every second (it asks for OpenMetrics).
    let target = url.trim_start_matches("http://");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: jetsweep\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let log = dir.path().join("prometheus.log");
    let _server = Proc {
        child: Command::new(prometheus)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
        log,
    };
    let server = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut up, mut done) = (None, None);
    while Instant::now() < deadline && (up != Some(1.0) || done != Some(8.0)) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        up = query(&server, "up{job=\"jetsweep\"}");
        done = query(&server, "jetsweep_jobs{state=\"done\"}");
    }
    assert_eq!(up, Some(1.0), "Prometheus' up for the coordinator");
    assert_eq!(done, Some(8.0), "the done jobs as Prometheus stored them");
    assert!(
        query(&server, "process_resident_memory_bytes{job=\"jetsweep\"}").is_some_and(|b| b > 0.0),
        "process series scraped"
    );
}

#[test]
fn without_credentials_metrics_is_401_unless_served_public() {
    let dir = tempfile::tempdir().unwrap();
    let (_closed, url) = coordinator_env(
        dir.path(),
        "127.0.0.1:0",
        "closed",
        &[],
        &[("JETSWEEP_TOKEN", TOKEN)],
    );
    let (status, body) = http_get(&url, "/metrics", None);
    assert_eq!(status, 401, "{body}");
    let (status, body) = http_get(&url, "/metrics", Some(TOKEN));
    assert_eq!(status, 200, "{body}");
    drop(_closed);
    let dir = tempfile::tempdir().unwrap();
    let (_public, url) = coordinator_env(
        dir.path(),
        "127.0.0.1:0",
        "public",
        &["--metrics-public"],
        &[("JETSWEEP_TOKEN", TOKEN)],
    );
    let (status, body) = http_get(&url, "/metrics", None);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("jetsweep_build_info"), "{body}");
    let (status, _) = http_get(&url, "/api/sweeps", None);
    assert_eq!(status, 401, "only /metrics is public");
}
