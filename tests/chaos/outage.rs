//! A long coordinator outage: the coordinator is killed (SIGKILL) while two jobs run and kept down
//! far longer than a lease (60 s in the full form, 10 s in the short), then started again on the
//! same state file and port. The workers train on through it; afterwards no lease may have expired,
//! no attempt been spent, and nothing be lost.

use std::time::{Duration, Instant};

use crate::common::*;

/// Four jobs of a few seconds each (100,000 jets, batch 32, 16 epochs); 3 s leases.
const SWEEP: &str = "name = \"outage\"\ndataset = \"synthetic:100000\"\nlease_timeout_s = 3\n[defaults]\nmodel = \"jsc-s\"\nmax_epochs = 16\nbatch_size = 32\nlearning_rate = 1e-3\n[grid]\nseed = [0, 1, 2, 3]\n";

pub async fn run(size: Size) -> Outcome {
    outage(size).await.into()
}

async fn outage(size: Size) -> Checked<String> {
    let down_for = match size {
        Size::Short => Duration::from_secs(10),
        Size::Full => Duration::from_secs(60),
    };
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let listen = format!("127.0.0.1:{}", free_port());
    let (mut before, url) = coordinator(dir.path(), &listen, "before");
    let id = submit(&url, SWEEP).await.sweep_id;
    let _workers = [worker(dir.path(), &url, "a"), worker(dir.path(), &url, "b")];
    poll(
        Duration::from_secs(120),
        "two jobs to be running",
        || async {
            let running = jobs(&url, &id)
                .await
                .iter()
                .filter(|j| state(j) == jetsweep_proto::v1::JobState::Leased && j.epochs_done >= 1)
                .count();
            (running == 2).then_some(())
        },
    )
    .await?;
    before.kill();
    let killed = Instant::now();
    tokio::time::sleep(down_for).await;
    let (_after, url_after) = coordinator(dir.path(), &listen, "after");
    check(url_after == url, || {
        format!("came back on {url_after}, not {url}")
    })?;
    let outage = killed.elapsed().as_secs_f64();
    let view = until_finished(&url, &id, Duration::from_secs(180)).await?;
    let l = ledger(&dir.path().join("state.db"))?;
    check(view.done == 4 && l.failed == 0, || {
        format!("{} of 4 jobs done after the outage ({l:?})", view.done)
    })?;
    check(l.attempts_expired == 0, || {
        format!(
            "{} leases expired over the outage ({l:?})",
            l.attempts_expired
        )
    })?;
    check(l.retried == 0 && l.duplicated == 0, || {
        format!("{} jobs needed another attempt ({l:?})", l.retried)
    })?;
    Ok(format!(
        "coordinator down {outage:.0} s with 2 jobs running (leases of 3 s): 0 leases expired, 0 attempts spent, 4/4 done, 0 lost"
    ))
}
