//! A coordinator many people share (`serve --tokens FILE`): each role may call exactly its RPCs
//! and web routes; a user cancels only its own sweeps; who did what is in the audit log; the
//! dashboard's login cookie is a session, not the token; gRPC from a web page and requests from
//! another site's page are refused.

use std::io::{Read, Write};
use std::process::Command;

use jetsweep_coordinator::testkit::http_get;
use jetsweep_proto::v1 as pb;
use jetsweep_tests::bins::coordinator_bin;
use jetsweep_tests::cluster::*;
use tonic::Code;

const SWEEP: &str = "name = \"shared\"\ndataset = \"synthetic:2000\"\n[defaults]\nmax_epochs = 1\n[grid]\nseed = [0, 1]\n";

/// `jetsweep token new NAME ROLE`: the token and the file's line.
fn new_credential(name: &str, role: &str) -> (String, String) {
    let out = Command::new(coordinator_bin())
        .args(["token", "new", name, role])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    let (token, line) = (lines.next().unwrap(), lines.next().unwrap());
    assert!(
        !line.contains(token),
        "the file's line holds the hash, never the token"
    );
    (token.to_string(), line.to_string())
}

/// What a call by `token` to every RPC comes back as: `true` where the gate let it through (any
/// answer but UNAUTHENTICATED or PERMISSION_DENIED), in the order of [`RPCS`].
async fn allowed(url: &str, token: &str, sweep: &str) -> Vec<bool> {
    let channel = jetsweep_proto::client::connect(url, Some(token), None)
        .await
        .unwrap();
    let mut s = jetsweep_proto::client::sweep_client(channel.clone());
    let mut w = jetsweep_proto::client::worker_client(channel);
    let id = || sweep.to_string();
    let codes: Vec<Result<(), tonic::Status>> = vec![
        s.submit_sweep(pb::SubmitSweepRequest {
            sweep_toml: b"name = 1".to_vec(),
        })
        .await
        .map(drop),
        s.get_sweep(pb::GetSweepRequest { sweep_id: id() })
            .await
            .map(drop),
        s.list_sweeps(pb::ListSweepsRequest::default())
            .await
            .map(drop),
        s.list_jobs(pb::ListJobsRequest {
            sweep_id: id(),
            ..Default::default()
        })
        .await
        .map(drop),
        s.watch_sweep(pb::WatchSweepRequest {
            sweep_id: "nope".into(),
        })
        .await
        .map(drop),
        s.get_results(pb::GetResultsRequest {
            sweep_id: id(),
            ..Default::default()
        })
        .await
        .map(drop),
        s.get_curves(pb::GetCurvesRequest {
            sweep_id: id(),
            ..Default::default()
        })
        .await
        .map(drop),
        s.list_decisions(pb::ListDecisionsRequest {
            sweep_id: id(),
            ..Default::default()
        })
        .await
        .map(drop),
        // A sweep that does not exist: the role check comes first.
        s.cancel_sweep(pb::CancelSweepRequest {
            sweep_id: "nope".into(),
        })
        .await
        .map(drop),
        s.list_workers(pb::ListWorkersRequest {}).await.map(drop),
        s.list_audit(pb::ListAuditRequest::default())
            .await
            .map(drop),
        s.get_model(pb::GetModelRequest {
            sweep_id: id(),
            ..Default::default()
        })
        .await
        .map(drop),
        // A sweep that does not exist: the role check comes first.
        s.delete_sweep(pb::DeleteSweepRequest {
            sweep_id: "nope".into(),
        })
        .await
        .map(drop),
        // A worker that made no attempt: NOT_FOUND once the role check lets it through.
        s.invalidate_worker(pb::InvalidateWorkerRequest {
            worker: "nobody-1".into(),
        })
        .await
        .map(drop),
        w.register(pb::RegisterRequest::default()).await.map(drop),
        w.heartbeat(pb::HeartbeatRequest::default()).await.map(drop),
        w.lease_jobs(pb::LeaseJobsRequest::default())
            .await
            .map(drop),
        w.report_epoch(pb::ReportEpochRequest::default())
            .await
            .map(drop),
        w.complete_job(pb::CompleteJobRequest::default())
            .await
            .map(drop),
        w.fail_job(pb::FailJobRequest::default()).await.map(drop),
        w.fetch_dataset(pb::FetchDatasetRequest::default())
            .await
            .map(drop),
        w.fetch_checkpoint(pb::FetchCheckpointRequest::default())
            .await
            .map(drop),
    ];
    codes
        .into_iter()
        .map(|r| match r {
            Ok(()) => true,
            Err(s) => {
                assert_ne!(s.code(), Code::Unauthenticated, "{}", s.message());
                s.code() != Code::PermissionDenied || !s.message().contains("may not")
            }
        })
        .collect()
}

/// The RPCs in the order [`allowed`] calls them, and who may call each: admin, user, viewer, worker.
const RPCS: [(&str, [bool; 4]); 22] = [
    ("SubmitSweep", [true, true, false, false]),
    ("GetSweep", [true, true, true, false]),
    ("ListSweeps", [true, true, true, false]),
    ("ListJobs", [true, true, true, false]),
    ("WatchSweep", [true, true, true, false]),
    ("GetResults", [true, true, true, false]),
    ("GetCurves", [true, true, true, false]),
    ("ListDecisions", [true, true, true, false]),
    ("CancelSweep", [true, true, false, false]),
    ("ListWorkers", [true, true, true, false]),
    ("ListAudit", [true, true, true, false]),
    ("GetModel", [true, true, true, false]),
    ("DeleteSweep", [true, true, false, false]),
    ("InvalidateWorker", [true, false, false, false]),
    ("Register", [true, false, false, true]),
    ("Heartbeat", [true, false, false, true]),
    ("LeaseJobs", [true, false, false, true]),
    ("ReportEpoch", [true, false, false, true]),
    ("CompleteJob", [true, false, false, true]),
    ("FailJob", [true, false, false, true]),
    ("FetchDataset", [true, false, false, true]),
    ("FetchCheckpoint", [true, false, false, true]),
];

/// One raw HTTP/1.1 request: the status and the whole answer.
fn raw(url: &str, request: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(url.trim_start_matches("http://")).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_calls_exactly_its_rpcs_and_routes_and_users_cancel_only_their_own_sweeps() {
    let dir = tempfile::tempdir().unwrap();
    let roles = ["admin", "user", "viewer", "worker"];
    let mut file = String::from("# test credentials\n");
    let mut tokens = Vec::new();
    for (name, role) in [
        ("ada", "admin"),
        ("alice", "user"),
        ("vera", "viewer"),
        ("wanda", "worker"),
        ("bob", "user"),
    ] {
        let (token, line) = new_credential(name, role);
        file.push_str(&line);
        file.push('\n');
        tokens.push(token);
    }
    let path = dir.path().join("tokens");
    std::fs::write(&path, &file).unwrap();
    // A file others may write is refused: whoever can write it can make themselves an admin.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = Command::new(coordinator_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--tokens"])
        .arg(&path)
        .arg("--state")
        .arg(dir.path().join("refused.db"))
        .env_remove("JETSWEEP_TOKEN")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("writable by others"),
        "{stderr}"
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();

    let tokens_arg = path.to_str().unwrap().to_string();
    let (_coordinator, url) = coordinator_with(
        dir.path(),
        "127.0.0.1:0",
        "roles",
        &["--tokens", &tokens_arg],
    );
    let (ada, alice, vera, wanda, bob) =
        (&tokens[0], &tokens[1], &tokens[2], &tokens[3], &tokens[4]);

    // Alice submits a sweep; it records her.
    let mut as_alice = jetsweep_coordinator::client::SweepClient::connect(&url, Some(alice), None)
        .await
        .unwrap();
    let sweep = as_alice.submit(SWEEP).await.unwrap();
    assert_eq!(sweep.submitted_by, "alice");

    // Every RPC × role.
    for (r, token) in [ada, alice, vera, wanda].into_iter().enumerate() {
        let got = allowed(&url, token, &sweep.sweep_id).await;
        for ((rpc, may), got) in RPCS.iter().zip(got) {
            assert_eq!(got, may[r], "{} calling {rpc}", roles[r]);
        }
    }
    // Without a token, or with an unknown one: UNAUTHENTICATED.
    for token in [None, Some("x".repeat(43))] {
        let channel = jetsweep_proto::client::connect(&url, token.as_deref(), None)
            .await
            .unwrap();
        let e = jetsweep_proto::client::sweep_client(channel)
            .list_sweeps(pb::ListSweepsRequest::default())
            .await
            .unwrap_err();
        assert_eq!(
            e.code(),
            Code::Unauthenticated,
            "{token:?}: {}",
            e.message()
        );
    }

    // Web routes × role: reading, cancelling, metrics.
    for (r, token) in [ada, alice, vera, wanda].into_iter().enumerate() {
        let reads = [true, true, true, false][r];
        for path in [
            "/api/sweeps",
            "/metrics",
            &format!("/api/sweeps/{}/results", sweep.sweep_id),
        ] {
            let (status, body) = http_get(&url, path, Some(token));
            assert_eq!(
                status,
                if reads { 200 } else { 403 },
                "{} GET {path}: {body}",
                roles[r]
            );
        }
        // A viewer's and a worker's cancel are refused before the sweep is looked at.
        if roles[r] == "viewer" || roles[r] == "worker" {
            let host = url.trim_start_matches("http://");
            let (status, answer) = raw(
                &url,
                &format!(
                    "POST /api/sweeps/{}/cancel HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nx-jetsweep: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    sweep.sweep_id
                ),
            );
            assert_eq!(status, 403, "{answer}");
        }
    }
    assert_eq!(http_get(&url, "/healthz", None).0, 200);
    assert_eq!(
        http_get(&url, "/metrics", None).0,
        401,
        "Prometheus without a token gets 401, not the login page"
    );

    // Bob (a user) may not cancel Alice's sweep; Alice may.
    let mut as_bob = jetsweep_coordinator::client::SweepClient::connect(&url, Some(bob), None)
        .await
        .unwrap();
    let e = as_bob.cancel(&sweep.sweep_id).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(
        e.message().contains("submitted by \"alice\""),
        "{}",
        e.message()
    );
    as_alice.cancel(&sweep.sweep_id).await.unwrap();

    // The audit log: Alice's submit and cancel, newest first; `jetsweep audit` prints them.
    let audit = as_alice.audit("", 100).await.unwrap();
    let seen: Vec<(&str, &str, &str)> = audit
        .iter()
        .map(|a| (a.who.as_str(), a.action.as_str(), a.sweep_id.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("alice", "cancel", sweep.sweep_id.as_str()),
            ("alice", "submit", sweep.sweep_id.as_str())
        ]
    );
    let out = Command::new(coordinator_bin())
        .args(["audit", "--coordinator", &url])
        .env("JETSWEEP_TOKEN", vera)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("alice") && text.contains("cancel"),
        "{text}"
    );

    // The dashboard's login: the cookie is a session id, not the token, and it opens the API.
    let host = url.trim_start_matches("http://");
    let body = format!("token={vera}");
    let (status, answer) = raw(
        &url,
        &format!(
            "POST /login HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    assert_eq!(status, 303, "{answer}");
    let cookie = answer
        .lines()
        .find_map(|l| {
            l.strip_prefix("set-cookie: ")
                .or_else(|| l.strip_prefix("Set-Cookie: "))
        })
        .expect("a cookie")
        .split(';')
        .next()
        .unwrap()
        .to_string();
    assert!(
        cookie.starts_with("jetsweep_session=") && !cookie.contains(vera.as_str()),
        "{cookie}"
    );
    assert!(
        answer.to_ascii_lowercase().contains("max-age="),
        "the session expires: {answer}"
    );
    let (status, _) = raw(
        &url,
        &format!(
            "GET /api/sweeps HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
        ),
    );
    assert_eq!(status, 200);

    // gRPC as a web page would send it (HTTP/1.1, text/plain: no CORS preflight) is refused, and
    // so is a request from another site's page.
    let (status, answer) = raw(
        &url,
        &format!(
            "POST /jetsweep.v1.SweepService/CancelSweep HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/plain\r\nAuthorization: Bearer {ada}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ),
    );
    assert_eq!(status, 415, "{answer}");
    let (status, answer) = raw(
        &url,
        &format!(
            "GET /api/sweeps HTTP/1.1\r\nHost: {host}\r\nOrigin: http://evil.example\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
        ),
    );
    assert_eq!(status, 403, "{answer}");
}

/// A coordinator without credentials answers web requests only for an address or localhost in
/// `Host` (a rebound DNS name is refused), and gRPC only over HTTP/2 with application/grpc.
#[test]
fn an_open_coordinator_refuses_rebound_host_names_and_grpc_from_web_pages() {
    let dir = tempfile::tempdir().unwrap();
    let (_coordinator, url) = coordinator(dir.path(), "127.0.0.1:0", "open");
    let port = url.rsplit(':').next().unwrap();
    for (host, expected) in [
        (format!("127.0.0.1:{port}"), 200),
        (format!("localhost:{port}"), 200),
        (format!("rebound.example:{port}"), 403),
    ] {
        let (status, answer) = raw(
            &url,
            &format!("GET /api/sweeps HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        );
        assert_eq!(status, expected, "{host}: {answer}");
    }
    let (status, answer) = raw(
        &url,
        "POST /jetsweep.v1.SweepService/SubmitSweep HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 415, "{answer}");
    // The dashboard's pages carry the security headers.
    let (status, answer) = raw(
        &url,
        &format!("GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"),
    );
    let head = answer.to_ascii_lowercase();
    assert_eq!(status, 200, "{answer}");
    for needle in [
        "content-security-policy: default-src 'self'; script-src 'self' 'sha256-",
        "frame-ancestors 'none'",
        "x-content-type-options: nosniff",
        "x-frame-options: deny",
    ] {
        assert!(head.contains(needle), "{needle}: {answer}");
    }
}

/// `jetsweep invalidate --worker NAME`: a finished sweep's jobs, all trained by one worker, are
/// trained again by another; the sweep ends done again with every result from the second worker,
/// and the audit log says who invalidated what.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidated_workers_jobs_are_trained_again_by_another() {
    let dir = tempfile::tempdir().unwrap();
    let (_coordinator, url) = coordinator(dir.path(), "127.0.0.1:0", "invalidate");
    let id = submit(&url, SWEEP).await.sweep_id;
    let first_name = {
        let _rogue = worker(dir.path(), &url, "rogue");
        wait_for(
            &url,
            &id,
            std::time::Duration::from_secs(60),
            "done",
            |s, _| s.done == 2,
        )
        .await;
        let listed = workers(&url).await;
        assert_eq!(listed.len(), 1, "{listed:?}");
        jetsweep_proto::worker_id::worker_name(&listed[0].worker_id).to_string()
    };
    let run = |args: &[&str]| {
        let out = Command::new(coordinator_bin())
            .args(args)
            .args(["--coordinator", &url])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    let said = run(&["invalidate", "--worker", &first_name]);
    assert!(
        said.contains(&format!(
            "worker {first_name}: 2 attempts invalidated, 2 epoch reports deleted, 2 jobs queued again"
        )),
        "{said}"
    );
    assert!(said.contains(&id), "{said}");
    assert_eq!(sweep(&url, &id).await.queued, 2);
    let _honest = worker(dir.path(), &url, "honest");
    wait_for(
        &url,
        &id,
        std::time::Duration::from_secs(60),
        "done again",
        |s, _| s.done == 2,
    )
    .await;
    let honest = workers(&url)
        .await
        .into_iter()
        .find(|w| jetsweep_proto::worker_id::worker_name(&w.worker_id) != first_name)
        .expect("the second worker");
    let db = rusqlite::Connection::open(dir.path().join("state.db")).unwrap();
    let outcomes: Vec<(String, String)> = db
        .prepare("SELECT worker_id, outcome FROM attempts ORDER BY started_ms")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let by = |w: &str| -> Vec<&str> {
        outcomes
            .iter()
            .filter(|(id, _)| jetsweep_proto::worker_id::worker_name(id) == w)
            .map(|(_, o)| o.as_str())
            .collect()
    };
    assert_eq!(by(&first_name), vec!["invalidated"; 2], "{outcomes:?}");
    assert_eq!(
        by(jetsweep_proto::worker_id::worker_name(&honest.worker_id)),
        vec!["done"; 2],
        "{outcomes:?}"
    );
    let audit = run(&["audit", "--sweep", &id]);
    assert!(audit.contains("invalidate"), "{audit}");
}
