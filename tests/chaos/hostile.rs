//! Hostile inputs: requests a careless or malicious client or worker could send — oversized and
//! impossible sweep files, grids of a million cells, a billion synthetic rows, bytes that are not
//! text, deep nesting, floods of concurrent submissions, forged and oversized worker calls. Each
//! must be refused with the right status and a message naming the field; the coordinator must keep
//! serving, and its peak memory (the kernel's VmHWM) stay under 256 MiB.

use std::time::Duration;

use jetsweep_proto::client;
use jetsweep_proto::v1 as pb;
use jetsweep_proto::v1::sweep_service_client::SweepServiceClient;
use tonic::Code;

use crate::common::*;

const RSS_LIMIT_MIB: u64 = 256;

/// One refusal: what was sent, the status it got, and what the message had to name.
type Case = (&'static str, Result<(), tonic::Status>, Code, &'static str);

fn refused<T>(r: Result<T, tonic::Status>) -> Result<(), tonic::Status> {
    r.map(|_| ())
}

/// A sweep file with `body` after a valid header.
fn sweep(body: &str) -> Vec<u8> {
    format!("name = \"hostile\"\ndataset = \"synthetic:2000\"\n{body}").into_bytes()
}

pub async fn run(_size: Size) -> Outcome {
    hostile().await.into()
}

/// The coordinator's peak resident memory so far, in MiB.
fn peak_rss_mib(pid: u32) -> Checked<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("the coordinator is gone: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb / 1024)
        .ok_or_else(|| "no VmHWM in /proc/PID/status".to_string())
}

async fn hostile() -> Checked<String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (coord, url) = coordinator(dir.path(), "127.0.0.1:0", "hostile");
    let pid = coord.child.id();
    let channel = client::connect(&url, None, None)
        .await
        .map_err(|e| e.to_string())?;
    let mut sweeps = client::sweep_client(channel.clone());
    let mut workers = client::worker_client(channel);
    // A client without the message limits the real ones set, to put oversized messages on the wire
    // (speaking this release's protocol, so the size is what is refused).
    let mut unlimited = SweepServiceClient::new(
        jetsweep_proto::auth::ClientToken::new(None)
            .map_err(|e| e.to_string())?
            .wrap(
                tonic::transport::Endpoint::from_shared(url.clone())
                    .map_err(|e| e.to_string())?
                    .connect()
                    .await
                    .map_err(|e| e.to_string())?,
            ),
    );
    let submit = |toml: Vec<u8>| {
        let mut c = sweeps.clone();
        async move {
            refused(
                c.submit_sweep(pb::SubmitSweepRequest { sweep_toml: toml })
                    .await,
            )
        }
    };

    let long_model = format!("model = \"mlp:{}8\"", "8,".repeat(60_000));
    let million_cells = format!(
        "[grid]\nbatch_size = [{0}]\nseed = [{0}]\nmax_epochs = [{0}]\nlearning_rate = [{1}]\n",
        (1..=32)
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join(","),
        (1..=32)
            .map(|v| format!("{v}e-4"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let deep = format!("x = {}{}", "[".repeat(100_000), "]".repeat(100_000));
    let mut not_text = sweep("");
    not_text.extend_from_slice(b"\nmodel = \"\xff\xfe\"\n");
    let mut cases: Vec<Case> = vec![
        (
            "a 120 KB model name",
            submit(sweep(&long_model)).await,
            Code::InvalidArgument,
            "model",
        ),
        (
            "a grid of 1,048,576 cells",
            submit(sweep(&million_cells)).await,
            Code::ResourceExhausted,
            "cells",
        ),
        (
            "bytes that are not UTF-8",
            submit(not_text).await,
            Code::InvalidArgument,
            "UTF-8",
        ),
        (
            "attempts = 1000000",
            submit(sweep("attempts = 1000000")).await,
            Code::InvalidArgument,
            "attempts",
        ),
        (
            "arrays nested 100,000 deep",
            submit(sweep(&deep)).await,
            Code::InvalidArgument,
            "sweep file",
        ),
        (
            "a dataset path on the coordinator's disk",
            submit(b"name = \"x\"\ndataset = \"/etc/passwd\"\n".to_vec()).await,
            Code::PermissionDenied,
            "dataset",
        ),
        (
            "a 5 MB message",
            refused(
                unlimited
                    .submit_sweep(pb::SubmitSweepRequest {
                        sweep_toml: vec![b'#'; 5 << 20],
                    })
                    .await,
            ),
            Code::OutOfRange,
            "",
        ),
        (
            "a 10,000-character sweep name",
            submit(format!("name = \"{}\"\n", "n".repeat(10_000)).into_bytes()).await,
            Code::InvalidArgument,
            "name",
        ),
    ];
    // The bad sweep files every door refuses (the parser's, the SweepService's and `submit`'s
    // table), through the coordinator process.
    for bad in jetsweep_coordinator::testkit::bad_sweeps::all() {
        let code = if bad.too_big {
            Code::ResourceExhausted
        } else if bad.names.contains(&"imagenet") {
            // A name that is no built-in source is a file name, and this coordinator reads none
            // (no --data-root).
            Code::PermissionDenied
        } else {
            Code::InvalidArgument
        };
        let result = submit(bad.toml.into_bytes()).await;
        cases.push((bad.what, result, code, bad.names[0]));
    }

    let register = |host: String, slots: u32| pb::RegisterRequest {
        protocol_version: jetsweep_proto::PROTOCOL_VERSION,
        host,
        device: String::new(),
        slots,
    };
    let nan_epoch = pb::EpochMetrics {
        epoch: 1,
        test_acc: f64::NAN,
        ..Default::default()
    };
    cases.extend([
        (
            "a 10 KB host name",
            refused(workers.register(register("h".repeat(10_000), 1)).await),
            Code::InvalidArgument,
            "host",
        ),
        (
            "slots = 1000000000",
            refused(workers.register(register("h".into(), 1_000_000_000)).await),
            Code::InvalidArgument,
            "slots",
        ),
        (
            "a heartbeat naming 5,000 leases",
            refused(
                workers
                    .heartbeat(pb::HeartbeatRequest {
                        worker_id: "w".into(),
                        lease_ids: vec!["l".into(); 5_000],
                        leaving: false,
                    })
                    .await,
            ),
            Code::InvalidArgument,
            "lease_ids",
        ),
        (
            "a NaN metric",
            refused(
                workers
                    .report_epoch(pb::ReportEpochRequest {
                        lease_id: "l".into(),
                        worker_id: "w".into(),
                        epochs: vec![nan_epoch],
                        checkpoint: None,
                    })
                    .await,
            ),
            Code::InvalidArgument,
            "test_acc",
        ),
        (
            "a 3 MB checkpoint",
            refused(
                workers
                    .report_epoch(pb::ReportEpochRequest {
                        lease_id: "l".into(),
                        worker_id: "w".into(),
                        epochs: vec![pb::EpochMetrics {
                            epoch: 1,
                            ..Default::default()
                        }],
                        checkpoint: Some(pb::TrialCheckpoint {
                            epoch: 1,
                            state: vec![0; 3 << 20],
                        }),
                    })
                    .await,
            ),
            Code::InvalidArgument,
            "checkpoint.state",
        ),
        (
            "a 10 KB lease id",
            refused(
                workers
                    .complete_job(pb::CompleteJobRequest {
                        lease_id: "l".repeat(10_000),
                        worker_id: "w".into(),
                        result: Some(pb::TrialResult::default()),
                        ..Default::default()
                    })
                    .await,
            ),
            Code::InvalidArgument,
            "lease_id",
        ),
        (
            "a completion on a made-up lease",
            refused(
                workers
                    .complete_job(pb::CompleteJobRequest {
                        lease_id: "000000000001.feed.1".into(),
                        worker_id: "w".into(),
                        result: Some(pb::TrialResult {
                            params: 117,
                            test_acc: 0.99,
                            best_epoch: 1,
                            best_test_acc: 0.99,
                        }),
                        ..Default::default()
                    })
                    .await,
            ),
            Code::FailedPrecondition,
            "lease",
        ),
        (
            "a dataset fetch by path",
            refused(
                workers
                    .fetch_dataset(pb::FetchDatasetRequest {
                        sha256: "../../../../etc/passwd".into(),
                    })
                    .await,
            ),
            Code::InvalidArgument,
            "sha256",
        ),
        (
            "a page token not given by the server",
            refused(
                sweeps
                    .list_jobs(pb::ListJobsRequest {
                        sweep_id: "x".into(),
                        page_size: u32::MAX,
                        page_token: "'; DROP TABLE jobs; --".into(),
                    })
                    .await,
            ),
            Code::InvalidArgument,
            "page_token",
        ),
    ]);

    let mut problems = Vec::new();
    for (what, result, code, needle) in &cases {
        match result {
            Ok(()) => problems.push(format!("{what}: accepted")),
            Err(s) if s.code() != *code || !s.message().contains(needle) => problems.push(format!(
                "{what}: {:?} {:?} (wanted {code:?} naming {needle:?})",
                s.code(),
                s.message().chars().take(200).collect::<String>()
            )),
            Err(_) => {}
        }
    }

    // A flood: 20 clients at once each submit a 10,000-cell sweep (the same cells: reused after
    // the first) while the coordinator must keep its memory bounded.
    let big = sweep(&format!(
        "[grid]\nseed = [{}]\n",
        (0..10_000)
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join(",")
    ));
    let flood: Vec<_> = (0..20)
        .map(|i| {
            let mut c = sweeps.clone();
            let mut toml = big.clone();
            toml.extend_from_slice(format!("\n# client {i}\n").as_bytes());
            tokio::spawn(async move {
                c.submit_sweep(pb::SubmitSweepRequest { sweep_toml: toml })
                    .await
                    .map(|_| ())
            })
        })
        .collect();
    let mut flooded = 0;
    for f in flood {
        match f.await.map_err(|e| e.to_string())? {
            Ok(()) => flooded += 1,
            Err(s) => problems.push(format!("flood: a 10,000-cell sweep refused: {s}")),
        }
    }

    // Still serving, with everything it accepted readable.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let listed = sweeps
        .list_sweeps(pb::ListSweepsRequest::default())
        .await
        .map_err(|s| format!("the coordinator stopped answering: {s}"))?
        .into_inner()
        .sweeps;
    if listed.len() != flooded {
        problems.push(format!(
            "{} sweeps listed, {flooded} accepted",
            listed.len()
        ));
    }
    let peak = peak_rss_mib(pid)?;
    if peak >= RSS_LIMIT_MIB {
        problems.push(format!("peak RSS {peak} MiB (limit {RSS_LIMIT_MIB})"));
    }
    check(problems.is_empty(), || problems.join("; "))?;
    Ok(format!(
        "{} hostile requests refused with the field named, {flooded} concurrent 10,000-cell submissions taken; the coordinator kept serving; peak RSS {peak} MiB (limit {RSS_LIMIT_MIB})",
        cases.len()
    ))
}
