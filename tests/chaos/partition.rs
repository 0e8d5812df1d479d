//! A network partition: worker A runs in a network namespace of its own, joined to this host by a
//! veth pair; mid-trial, the link is cut (`tc netem loss 100%`, or the namespace's end set down
//! where the kernel has no netem). A keeps training;
//! its lease expires; worker B, on the host, takes the job (resuming from A's last report) and
//! finishes it. When the partition heals, A's late word is refused: the job has exactly one result,
//! B's. Needs root and `ip`/`tc`; the namespace and links are removed afterwards.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::*;

/// One trial of several seconds (100,000 jets, batch 32, 24 epochs); 3 s leases.
const SWEEP: &str = "name = \"partition\"\ndataset = \"synthetic:100000\"\nlease_timeout_s = 3\n[defaults]\nmodel = \"jsc-s\"\nmax_epochs = 24\nbatch_size = 32\nlearning_rate = 1e-3\n";

/// The namespace, its veth pair and addresses; all removed on drop.
struct Net {
    ns: String,
    inside: String,
    host_ip: String,
}

impl Net {
    fn create() -> Result<Net, String> {
        let id = std::process::id() % 100_000;
        let net = Net {
            ns: format!("jsc-chaos-{id}"),
            inside: format!("jcv{id}n"),
            host_ip: format!("10.213.{}.1", id % 250),
        };
        let host_side = format!("jcv{id}h");
        let inside_ip = format!("10.213.{}.2/30", id % 250);
        let host_cidr = format!("{}/30", net.host_ip);
        let steps: Vec<Vec<&str>> = vec![
            vec!["ip", "netns", "add", &net.ns],
            vec![
                "ip",
                "link",
                "add",
                &host_side,
                "type",
                "veth",
                "peer",
                "name",
                &net.inside,
            ],
            vec!["ip", "link", "set", &net.inside, "netns", &net.ns],
            vec!["ip", "addr", "add", &host_cidr, "dev", &host_side],
            vec!["ip", "link", "set", &host_side, "up"],
            vec![
                "ip",
                "netns",
                "exec",
                &net.ns,
                "ip",
                "addr",
                "add",
                &inside_ip,
                "dev",
                &net.inside,
            ],
            vec![
                "ip",
                "netns",
                "exec",
                &net.ns,
                "ip",
                "link",
                "set",
                &net.inside,
                "up",
            ],
            vec![
                "ip", "netns", "exec", &net.ns, "ip", "link", "set", "lo", "up",
            ],
        ];
        for step in steps {
            let out = Command::new(step[0])
                .args(&step[1..])
                .output()
                .map_err(|e| format!("{}: {e}", step.join(" ")))?;
            if !out.status.success() {
                return Err(format!(
                    "{}: {}",
                    step.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
        Ok(net)
    }

    /// Cuts the namespace off (`on`) or joins it again: with `tc netem loss 100%` on its end of
    /// the link where the kernel has netem, else by setting that end down (the cable pulled).
    fn cut(&self, on: bool) -> Result<(), String> {
        let ip = |args: &[&str]| -> Result<(), String> {
            let out = Command::new("ip")
                .args(["netns", "exec", &self.ns])
                .args(args)
                .output()
                .map_err(|e| e.to_string())?;
            check(out.status.success(), || {
                format!(
                    "{}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                )
            })
        };
        let netem = [
            "tc",
            "qdisc",
            "add",
            "dev",
            &self.inside,
            "root",
            "netem",
            "loss",
            "100%",
        ];
        if on {
            if ip(&netem).is_ok() {
                return Ok(());
            }
            return ip(&["ip", "link", "set", &self.inside, "down"]);
        }
        let _ = ip(&["tc", "qdisc", "del", "dev", &self.inside, "root"]);
        ip(&["ip", "link", "set", &self.inside, "up"])
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // Deleting the namespace deletes the veth pair with it.
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

pub async fn run(_size: Size) -> Outcome {
    let net = match Net::create() {
        Ok(net) => net,
        Err(e) => {
            return Outcome::Skipped(format!(
                "cannot make a network namespace here ({e}); run as root with iproute2"
            ));
        }
    };
    partition(&net).await.into()
}

async fn partition(net: &Net) -> Checked<String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (_coordinator, url) = coordinator_with(
        dir.path(),
        &format!("{}:0", net.host_ip),
        "partition",
        &["--insecure"],
    );
    let id = submit(&url, SWEEP).await.sweep_id;
    let a_log = dir.path().join("worker-a.log");
    let _a = Proc {
        child: Command::new("ip")
            .args(["netns", "exec", &net.ns])
            .arg(jetsweep_tests::bins::worker_bin())
            .args(["--coordinator", &url, "--slots", "1", "--cache-dir"])
            .arg(dir.path().join("cache-a"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&a_log).map_err(|e| e.to_string())?)
            .spawn()
            .map_err(|e| e.to_string())?,
        log: a_log.clone(),
    };
    let cut_at = poll(
        Duration::from_secs(120),
        "worker A to report two epochs",
        || async {
            jobs(&url, &id)
                .await
                .first()
                .filter(|j| j.epochs_done >= 2)
                .map(|j| j.epochs_done)
        },
    )
    .await?;
    net.cut(true)?;
    let b = worker(dir.path(), &url, "b");
    until_finished(&url, &id, Duration::from_secs(120)).await?;
    // A trains on, cut off, for a few seconds more; then the partition heals.
    tokio::time::sleep(Duration::from_secs(3)).await;
    net.cut(false)?;
    let said = poll(
        Duration::from_secs(90),
        "worker A to be told its lease is gone",
        || {
            let log = std::fs::read_to_string(&a_log).unwrap_or_default();
            async move {
                [
                    "epoch report refused",
                    "did not take the outcome",
                    "lease no longer current",
                ]
                .into_iter()
                .find(|needle| log.contains(needle))
            }
        },
    )
    .await?;
    let state = dir.path().join("state.db");
    let l = ledger(&state)?;
    check(
        l.done == 1 && l.attempts_done == 1 && l.duplicated == 0,
        || format!("not exactly one result ({l:?})"),
    )?;
    check(l.attempts_expired == 1, || {
        format!("A's lease did not expire ({l:?})")
    })?;
    let db =
        rusqlite::Connection::open_with_flags(&state, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| e.to_string())?;
    let (expired_by, done_by): (String, String) = db
        .query_row(
            "SELECT (SELECT worker_id FROM attempts WHERE outcome = 'expired'), (SELECT worker_id FROM attempts WHERE outcome = 'done')",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(|e| e.to_string())?;
    check(expired_by != done_by, || {
        "the same worker expired and completed".into()
    })?;
    let b_log = std::fs::read_to_string(&b.log).unwrap_or_default();
    check(
        b_log.contains("resumed from the state saved after epoch"),
        || "worker B started the trial over instead of resuming it".into(),
    )?;
    Ok(format!(
        "worker A cut off after epoch {cut_at}; its lease expired, B resumed and finished the job; A, reconnected, was refused (\"{said}\"); 1 result, from B"
    ))
}
