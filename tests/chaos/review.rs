//! The security review's attacks, replayed against real processes on 127.0.0.1: a web page's
//! cross-origin gRPC cancel, 100 abandoned live-update and 100 abandoned watch streams, 50 TLS
//! handshakes that never finish, and a worker's dataset cache file replaced by another dataset's.
//! Each must be refused or survived, and afterwards the coordinator must be quiet again (CPU over
//! two seconds, `/healthz` latency) and serve new streams.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use jetsweep_proto::client;
use jetsweep_proto::v1 as pb;

use crate::common::*;

pub async fn run(_size: Size) -> Outcome {
    match review().await {
        Ok(summary) => Outcome::Passed(summary),
        Err(why) if why.starts_with("skip: ") => Outcome::Skipped(why[6..].to_string()),
        Err(why) => Outcome::Failed(why),
    }
}

async fn review() -> Checked<String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (coord, url) = coordinator(dir.path(), "127.0.0.1:0", "review");
    let host = url.trim_start_matches("http://").to_string();
    let submitted = submit(
        &url,
        "name = \"review\"\ndataset = \"synthetic:2000\"\n[defaults]\nmodel = \"jsc-tiny\"\nmax_epochs = 2\n[grid]\nseed = [1, 2, 3]\n",
    )
    .await;
    let id = submitted.sweep_id.clone();
    let mut lines = Vec::new();

    // 1. A web page's cross-origin cancel: gRPC over HTTP/1.1 as text/plain (no CORS preflight),
    //    and the dashboard's cancel route with a foreign Origin.
    let grpc = http(
        &host,
        &format!(
            "POST /jetsweep.v1.SweepService/CancelSweep HTTP/1.1\r\nHost: {host}\r\nOrigin: http://evil.example\r\nContent-Type: text/plain\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ),
    )?;
    let web = http(
        &host,
        &format!(
            "POST /api/sweeps/{id}/cancel HTTP/1.1\r\nHost: {host}\r\nOrigin: http://evil.example\r\nContent-Type: text/plain\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ),
    )?;
    check(grpc.0 == 415 && web.0 == 403, || {
        format!(
            "cross-origin cancel: gRPC as text/plain answered {}, the web route {} (wanted 415 and 403)",
            grpc.0, web.0
        )
    })?;
    let view = sweep(&url, &id).await;
    check(view.cancelled == 0, || {
        format!("the sweep was cancelled by a cross-origin request: {view:?}")
    })?;
    lines.push("cross-origin cancel refused (415, 403)".to_string());

    // 2. 100 live-update streams and 100 watch streams opened and abandoned.
    let mut pages = Vec::new();
    let (mut live, mut busy) = (0, 0);
    for _ in 0..100 {
        let mut s = TcpStream::connect(&host).map_err(|e| e.to_string())?;
        write!(
            s,
            "GET /api/sweeps/{id}/events HTTP/1.1\r\nHost: {host}\r\n\r\n"
        )
        .map_err(|e| e.to_string())?;
        match status_line(&mut s)? {
            200 => live += 1,
            503 => busy += 1,
            other => return Err(format!("an events stream answered {other}")),
        }
        pages.push(s);
    }
    let channel = client::connect(&url, None, None)
        .await
        .map_err(|e| e.to_string())?;
    let mut watches = Vec::new();
    let (mut watching, mut refused) = (0, 0);
    for _ in 0..100 {
        let mut c = client::sweep_client(channel.clone());
        match c
            .watch_sweep(pb::WatchSweepRequest {
                sweep_id: id.clone(),
            })
            .await
        {
            Ok(stream) => {
                watching += 1;
                watches.push(stream.into_inner());
            }
            Err(s) if s.code() == tonic::Code::Unavailable => refused += 1,
            Err(s) => return Err(format!("a watch stream: {s}")),
        }
    }
    check(busy > 0 && refused > 0, || {
        format!("one client opened {live} live pages and {watching} watches: no per-client cap")
    })?;
    drop(pages);
    drop(watches);
    drop(channel);
    // Within a few seconds every slot is free again: a new page and a new watch are served.
    poll(
        Duration::from_secs(5),
        "a live page after the abandoned ones",
        || async {
            let mut s = TcpStream::connect(&host).ok()?;
            write!(
                s,
                "GET /api/sweeps/{id}/events HTTP/1.1\r\nHost: {host}\r\n\r\n"
            )
            .ok()?;
            (status_line(&mut s).ok()? == 200).then_some(())
        },
    )
    .await?;
    let mut watcher = client(&url).await;
    watcher
        .watch(&id)
        .await
        .map_err(|e| format!("a watch after the abandoned ones: {e}"))?;
    lines.push(format!(
        "100 + 100 abandoned streams: {live} pages and {watching} watches served, {busy} and {refused} over the per-client caps; slots free again within 5 s"
    ));

    // 3. The coordinator is quiet again: its CPU over two seconds, /healthz's latency.
    let (cpu, healthz) = quiet(coord.child.id(), &host).await?;
    lines.push(format!(
        "then {cpu:.0} % CPU over 2 s, /healthz in {} ms",
        healthz.as_millis()
    ));
    check(cpu < 20.0 && healthz < Duration::from_millis(200), || {
        format!("not quiet after the abandoned streams: {cpu:.0} % CPU, /healthz {healthz:?}")
    })?;

    // 4. A worker's cached dataset replaced by another dataset's file (checksum and all): the
    //    worker notices, fetches the right one, and the sweep's results are those of a clean cache.
    watcher
        .cancel(&id)
        .await
        .map_err(|e| format!("cancelling the first sweep: {e}"))?;
    lines.push(tampered_cache(dir.path(), &url).await?);

    // 5. TLS handshakes that never finish are closed, and a real client is served meanwhile.
    lines.push(slow_handshakes(dir.path()).await?);
    Ok(lines.join("; "))
}

/// Sends `request` and reads the answer's status code and text (the server closes).
fn http(host: &str, request: &str) -> Checked<(u16, String)> {
    let mut s = TcpStream::connect(host).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    s.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    let code = answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no HTTP status in {answer:?}"))?;
    Ok((code, answer))
}

/// Reads an HTTP answer's status line from `s` and returns its code.
fn status_line(s: &mut TcpStream) -> Checked<u16> {
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => {
                return Err(format!(
                    "no status line, got {:?}",
                    String::from_utf8_lossy(&head)
                ));
            }
        }
    }
    String::from_utf8_lossy(&head)
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status in {:?}", String::from_utf8_lossy(&head)))
}

/// The process's CPU use over two seconds (percent of one core) and `/healthz`'s answer time.
async fn quiet(pid: u32, host: &str) -> Checked<(f64, Duration)> {
    let ticks = || -> Checked<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map_err(|e| format!("the coordinator is gone: {e}"))?;
        // After the command name's closing parenthesis: fields 14 and 15 are utime and stime.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let n = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Ok(n(11) + n(12))
    };
    // SAFETY: sysconf only reads a constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let before = ticks()?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cpu = (ticks()? - before) as f64 / hz / 2.0 * 100.0;
    let started = Instant::now();
    let (code, _) = http(
        host,
        &format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
    )?;
    check(code == 200, || format!("/healthz answered {code}"))?;
    Ok((cpu, started.elapsed()))
}

/// Runs a sweep on a dataset with a worker, replaces its cached file by another dataset's (a file
/// whole by its own checksum, named as the first), and runs a second sweep on the first dataset
/// with a new worker on that cache: it must refetch, and train what a clean cache trains.
async fn tampered_cache(dir: &std::path::Path, url: &str) -> Checked<String> {
    let sweep_on = |name: &str, dataset: &str, seed: u32| {
        format!(
            "name = \"{name}\"\ndataset = \"{dataset}\"\n[defaults]\nmodel = \"jsc-tiny\"\nmax_epochs = 1\n[grid]\nseed = [{seed}]\n"
        )
    };
    let cache = dir.join("cache-cache").join("datasets");
    let cached = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(&cache)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default()
    };
    // One dataset at a time, so that each new file in the cache is that dataset's.
    let (target, forged) = {
        let _w = worker(dir, url, "cache");
        let first = submit(url, &sweep_on("cache-a", "synthetic:2400", 1)).await;
        until_finished(url, &first.sweep_id, Duration::from_secs(60)).await?;
        let after_first = cached();
        let other = submit(url, &sweep_on("cache-b", "synthetic:3600", 1)).await;
        until_finished(url, &other.sweep_id, Duration::from_secs(60)).await?;
        let after_other = cached();
        let forged = after_other
            .iter()
            .find(|p| !after_first.contains(p))
            .cloned();
        match (after_first.as_slice(), forged) {
            ([target], Some(forged)) => (target.clone(), forged),
            _ => {
                return Err(format!(
                    "the worker's cache held {after_first:?}, then {after_other:?}"
                ));
            }
        }
    };
    std::fs::copy(&forged, &target).map_err(|e| e.to_string())?;
    // The same dataset, a new seed, on the tampered cache; and the same trial on a clean one.
    let again = submit(url, &sweep_on("cache-a-again", "synthetic:2400", 2)).await;
    {
        let _w = worker(dir, url, "cache");
        until_finished(url, &again.sweep_id, Duration::from_secs(60)).await?;
    }
    let log = std::fs::read_to_string(dir.join("worker-cache.log")).unwrap_or_default();
    check(log.contains("does not hash to its name"), || {
        format!(
            "the worker did not notice the replaced cache file:\n{}",
            log_tail(&dir.join("worker-cache.log"), 10)
        )
    })?;
    let tampered = jobs(url, &again.sweep_id).await;
    let clean_dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (_clean_coord, clean_url) = coordinator(clean_dir.path(), "127.0.0.1:0", "clean");
    let clean = submit(&clean_url, &sweep_on("cache-a-again", "synthetic:2400", 2)).await;
    {
        let _w = worker(clean_dir.path(), &clean_url, "clean");
        until_finished(&clean_url, &clean.sweep_id, Duration::from_secs(60)).await?;
    }
    let clean = jobs(&clean_url, &clean.sweep_id).await;
    let acc = |j: &[pb::JobView]| {
        j.first()
            .and_then(|j| j.result.as_ref())
            .map(|r| r.test_acc)
            .ok_or("no result")
    };
    let (a, b) = (acc(&tampered)?, acc(&clean)?);
    check(a == b, || {
        format!("after a tampered cache the trial's test accuracy is {a}, on a clean cache {b}")
    })?;
    Ok(format!(
        "a replaced cache file refetched: test accuracy {:.4} as on a clean cache",
        a
    ))
}

/// 50 connections to a TLS coordinator that never send a ClientHello: a real client is served
/// meanwhile, and the server closes them once the handshake time is up.
async fn slow_handshakes(dir: &std::path::Path) -> Checked<String> {
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).map_err(|e| e.to_string())?;
    if let Err(e) = jetsweep_tests::certs::make_certificates(&certs, &["127.0.0.1"]) {
        return Err(if jetsweep_tests::need::require_all() {
            e
        } else {
            format!("skip: slow TLS handshakes need openssl: {e}")
        });
    }
    let tls_dir = dir.join("tls");
    std::fs::create_dir_all(&tls_dir).map_err(|e| e.to_string())?;
    let (_tls, url) = coordinator_with(
        &tls_dir,
        "127.0.0.1:0",
        "tls",
        &[
            "--tls-cert",
            certs.join("server.pem").to_str().unwrap_or_default(),
            "--tls-key",
            certs.join("server.key").to_str().unwrap_or_default(),
            "--token",
            "s3cret-s3cret-s3cret",
        ],
    );
    let host = url.trim_start_matches("https://").to_string();
    let started = Instant::now();
    let mut silent = Vec::new();
    for _ in 0..50 {
        let s = TcpStream::connect(&host).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| e.to_string())?;
        silent.push(s);
    }
    let asked = Instant::now();
    let mut c = client::sweep_client(
        client::connect(
            &url,
            Some("s3cret-s3cret-s3cret"),
            Some(&certs.join("ca.pem")),
        )
        .await
        .map_err(|e| format!("a real client beside 50 silent handshakes: {e}"))?,
    );
    c.list_sweeps(pb::ListSweepsRequest::default())
        .await
        .map_err(|e| format!("listing beside 50 silent handshakes: {e}"))?;
    let served = asked.elapsed();
    // Each silent connection ends (EOF or reset) once the handshake time is up.
    let handles: Vec<_> = silent
        .into_iter()
        .map(|mut s| {
            std::thread::spawn(move || {
                let mut byte = [0u8; 1];
                let _ = s.read(&mut byte);
                Instant::now()
            })
        })
        .collect();
    let mut latest = started;
    for h in handles {
        latest = latest.max(h.join().map_err(|_| "a reader thread panicked")?);
    }
    let closed_after = latest - started;
    check(closed_after < Duration::from_secs(20), || {
        format!("silent TLS connections were held {closed_after:?}")
    })?;
    Ok(format!(
        "50 silent TLS handshakes closed after {:.1} s, a real client served in {} ms meanwhile",
        closed_after.as_secs_f64(),
        served.as_millis()
    ))
}
