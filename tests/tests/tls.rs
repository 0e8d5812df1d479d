//! A coordinator on a network: TLS with a certificate made here (a private authority, as a cluster
//! would have), and the refusal to serve off loopback without TLS and a token.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use jetsweep_coordinator::testkit::sweeps::QUICK;
use jetsweep_proto::client;
use jetsweep_proto::v1 as pb;

use crate::support::{coordinator_bin, text};
use jetsweep_tests::cluster::*;

/// A certificate authority and a server certificate for 127.0.0.1 signed by it.
fn make_certificates(dir: &Path) {
    jetsweep_tests::certs::make_certificates(dir, &["127.0.0.1"]).unwrap();
}

/// Over TLS with a token, a client and a worker that trust the authority run a sweep; a client
/// that does not trust it, or that speaks plaintext, is refused with the cause named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_runs_over_tls_and_untrusting_clients_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    make_certificates(dir.path());
    let (cert, key, ca) = (
        dir.path().join("server.pem"),
        dir.path().join("server.key"),
        dir.path().join("ca.pem"),
    );
    let (_coord, url) = coordinator_with(
        dir.path(),
        "127.0.0.1:0",
        "tls",
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--token",
            "s3cret-s3cret-s3cret",
        ],
    );
    assert!(url.starts_with("https://"), "{url}");
    let mut sweeps = client::sweep_client(
        client::connect(&url, Some("s3cret-s3cret-s3cret"), Some(&ca))
            .await
            .expect("a client trusting the authority connects"),
    );
    let sweep_id = sweeps
        .submit_sweep(pb::SubmitSweepRequest {
            sweep_toml: QUICK.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .sweep
        .unwrap()
        .sweep_id;
    let _w = worker_with(
        dir.path(),
        &url,
        "1",
        &[
            "--token",
            "s3cret-s3cret-s3cret",
            "--ca",
            ca.to_str().unwrap(),
        ],
    );
    let start = std::time::Instant::now();
    loop {
        let s = sweeps
            .get_sweep(pb::GetSweepRequest {
                sweep_id: sweep_id.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .sweep
            .unwrap();
        if s.done == 8 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(240), "{s:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The CLI with --ca reads the results over TLS.
    let out = Command::new(coordinator_bin())
        .args([
            "results",
            &sweep_id,
            "--coordinator",
            &url,
            "--token",
            "s3cret-s3cret-s3cret",
            "--ca",
        ])
        .arg(&ca)
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    // Without the authority, the public roots do not vouch for this certificate.
    let untrusting = client::connect(&url, Some("s3cret-s3cret-s3cret"), None).await;
    let err = untrusting.expect_err("refused").to_string();
    assert!(err.contains(&url), "{err}");
    // Plaintext to a TLS port fails too (the CLI says which address).
    let plain = url.replace("https://", "http://");
    let out = Command::new(coordinator_bin())
        .args([
            "status",
            "--coordinator",
            &plain,
            "--token",
            "s3cret-s3cret-s3cret",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success(), "{:?}", text(&out));
}

/// Off loopback, `serve` refuses to start without TLS and a token unless told --insecure, and says
/// what is missing.
#[test]
fn serving_off_loopback_needs_tls_and_a_token_or_says_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(coordinator_bin())
        .args(["serve", "--listen", "0.0.0.0:0", "--state"])
        .arg(dir.path().join("state.db"))
        .args(["--token", "s3cret-s3cret-s3cret"])
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("without TLS") && stderr.contains("--insecure"),
        "{stderr}"
    );
    let (_coord, url) = coordinator_with(dir.path(), "0.0.0.0:0", "insecure", &["--insecure"]);
    assert!(url.starts_with("http://0.0.0.0:"), "{url}");
}

/// The certificate `deploy/slurm/jetsweep-sweep.sbatch` makes for each allocation (self-signed,
/// not a CA) is trusted by a client given it as --ca.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_signed_certificate_like_the_slurm_scripts_is_trusted_with_ca() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "7",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    let cert = dir.path().join("cert.pem");
    let (_coord, url) = coordinator_with(
        dir.path(),
        "127.0.0.1:0",
        "self-signed",
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            dir.path().join("key.pem").to_str().unwrap(),
        ],
    );
    let mut sweeps = client::sweep_client(client::connect(&url, None, Some(&cert)).await.unwrap());
    sweeps
        .list_sweeps(pb::ListSweepsRequest::default())
        .await
        .expect("a call over TLS");
}
