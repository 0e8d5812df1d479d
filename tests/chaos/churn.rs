//! Worker churn: three workers run a sweep (jsc-s jobs of about a second each, so that it lasts
//! long enough to churn) while one of them, chosen at random, is killed with
//! SIGKILL every 2–4 s and started again. Every job must end done, once: no duplicate result, no
//! failure (a worker's death is not the job's fault).

use std::time::{Duration, Instant};

use crate::common::*;

const WORKERS: usize = 3;

fn sweep(jobs: usize) -> String {
    let seeds: Vec<String> = (0..jobs).map(|s| s.to_string()).collect();
    format!(
        "name = \"churn\"\ndataset = \"synthetic:100000\"\nlease_timeout_s = 3\nattempts = 3\n[defaults]\nmodel = \"jsc-s\"\nmax_epochs = 4\nbatch_size = 32\nlearning_rate = 1e-3\n[grid]\nseed = [{}]\n",
        seeds.join(", ")
    )
}

pub async fn run(size: Size) -> Outcome {
    churn(size).await.into()
}

async fn churn(size: Size) -> Checked<String> {
    let jobs = match size {
        Size::Short => 60,
        Size::Full => 160,
    };
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (_coordinator, url) = coordinator(dir.path(), "127.0.0.1:0", "churn");
    let id = submit(&url, &sweep(jobs)).await.sweep_id;
    let mut workers: Vec<Proc> = (0..WORKERS)
        .map(|i| worker(dir.path(), &url, &format!("w{i}")))
        .collect();
    let mut dice = Dice::new(std::process::id() as u64);
    let (start, limit) = (Instant::now(), Duration::from_secs(60 + 3 * jobs as u64));
    let mut kills = 0;
    let mut next_kill = Instant::now() + Duration::from_millis(dice.between(2_000, 4_000));
    loop {
        if let Some(s) = try_sweep(&url, &id).await
            && s.done + s.failed + s.cancelled == s.total
        {
            break;
        }
        check(start.elapsed() < limit, || {
            format!("the sweep did not finish in {limit:?} ({kills} kills)")
        })?;
        if Instant::now() >= next_kill {
            let victim = dice.between(0, WORKERS as u64) as usize;
            workers[victim].kill();
            kills += 1;
            workers[victim] = worker(dir.path(), &url, &format!("w{victim}"));
            next_kill = Instant::now() + Duration::from_millis(dice.between(2_000, 4_000));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seconds = start.elapsed().as_secs_f64();
    let l = ledger(&dir.path().join("state.db"))?;
    check(l.done == jobs as u32 && l.failed == 0, || {
        format!(
            "{} of {jobs} jobs done, {} failed ({l:?})",
            l.done, l.failed
        )
    })?;
    check(l.duplicated == 0 && l.attempts_done == jobs as u32, || {
        format!("{} jobs completed twice ({l:?})", l.duplicated)
    })?;
    check(kills >= 3, || {
        format!("only {kills} kills: the sweep ran too fast to test churn")
    })?;
    Ok(format!(
        "{jobs}/{jobs} jobs done, 0 duplicates, 0 failed; {kills} workers killed (SIGKILL every 2-4 s), {} leases expired and {} jobs retried, in {seconds:.0} s",
        l.attempts_expired, l.retried
    ))
}
