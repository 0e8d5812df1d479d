//! A second local user against a running `jetsweep run` (the review's shared login node): while
//! a sweep runs, the user `nobody` finds the port (as `ss -ltn` would show it) and tries the
//! gRPC API, the dashboard, the state files and the workers' environment (where the run's token
//! is). Each must be refused. Root is needed to act as another user (`setpriv`); without it the
//! scenario is skipped, unless `JETSWEEP_TEST_REQUIRE_ALL=1`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::*;

pub async fn run(_size: Size) -> Outcome {
    // SAFETY: geteuid only reads the process's user id.
    let root = unsafe { libc::geteuid() } == 0;
    let setpriv = Command::new("setpriv").arg("--version").output().is_ok();
    if !root || !setpriv {
        let why = "acting as a second local user needs root and setpriv".to_string();
        return if jetsweep_tests::need::require_all() {
            Outcome::Failed(why)
        } else {
            Outcome::Skipped(why)
        };
    }
    local_user().await.into()
}

/// Runs `args` as the user `nobody`; returns whether it succeeded and its output.
fn as_nobody(args: &[&str]) -> (bool, String) {
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--reset-env",
        ])
        .args(args)
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(o) => (
            o.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        ),
        Err(e) => (false, format!("setpriv: {e}")),
    }
}

async fn local_user() -> Checked<String> {
    // A folder other users may enter (as a home or project folder often is), holding the binaries
    // (the build's folder is under root's private home) and the run's state folder.
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let open = |p: &Path, mode: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
            .map_err(|e| format!("{}: {e}", p.display()))
    };
    open(dir.path(), 0o755)?;
    let bin = |from: &Path| -> Checked<std::path::PathBuf> {
        let to = dir.path().join(from.file_name().unwrap_or_default());
        std::fs::copy(from, &to).map_err(|e| format!("{}: {e}", from.display()))?;
        open(&to, 0o755)?;
        Ok(to)
    };
    let jetsweep = bin(jetsweep_tests::bins::coordinator_bin())?;
    bin(jetsweep_tests::bins::worker_bin())?;
    let secret = dir.path().join("secret.csv");
    std::fs::write(&secret, "only the runner may read this\n").map_err(|e| e.to_string())?;
    open(&secret, 0o600)?;
    let sweep = dir.path().join("long.toml");
    std::fs::write(
        &sweep,
        "name = \"long\"\ndataset = \"synthetic:200000\"\n[defaults]\nmax_epochs = 20\nbatch_size = 64\n[grid]\nseed = [0, 1, 2, 3, 4, 5, 6, 7]\n",
    )
    .map_err(|e| e.to_string())?;
    let state = dir.path().join("state").join("state.db");
    let log = dir.path().join("run.log");
    let mut run = Proc {
        child: Command::new(&jetsweep)
            .args(["run", sweep.to_str().unwrap_or_default(), "--workers", "1"])
            .arg("--state")
            .arg(&state)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).map_err(|e| e.to_string())?)
            .spawn()
            .map_err(|e| e.to_string())?,
        log: log.clone(),
    };
    // The port, as any local user sees it listening; the URL is in the state lock for us.
    let lock = std::path::PathBuf::from(format!("{}.lock", state.display()));
    let url = poll(Duration::from_secs(60), "the run's coordinator", || async {
        let text = std::fs::read_to_string(&lock).ok()?;
        text.split_whitespace()
            .find(|w| w.starts_with("http://"))
            .map(str::to_string)
    })
    .await?;
    let worker_pid = poll(Duration::from_secs(30), "a worker process", || async {
        let out = Command::new("pgrep")
            .args(["-f", "jetsweep-worker"])
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.trim().parse::<u32>().ok())
            .find(|pid| {
                std::fs::read_link(format!("/proc/{pid}/exe"))
                    .map(|exe| exe.starts_with(dir.path()))
                    .unwrap_or(false)
            })
    })
    .await?;

    let mut problems = Vec::new();
    let mut refused = Vec::new();
    let host = url.trim_start_matches("http://");
    let jetsweep = jetsweep.to_str().unwrap_or_default();
    // GET /api/sweeps by hand (bash's /dev/tcp): succeeds only on a 200.
    let api = |extra: &str| -> Vec<String> {
        vec![
            "bash".into(),
            "-c".into(),
            format!(
                "exec 3<>/dev/tcp/{}/{} || exit 1; printf 'GET /api/sweeps HTTP/1.1\\r\\nHost: {host}\\r\\n{extra}Connection: close\\r\\n\\r\\n' >&3; head -1 <&3 | grep -q ' 200 '",
                host.split(':').next().unwrap_or(""),
                host.split(':').nth(1).unwrap_or("")
            ),
        ]
    };
    let tries: Vec<(&str, Vec<String>)> = vec![
        (
            "list sweeps over gRPC",
            vec![
                jetsweep.into(),
                "status".into(),
                "--coordinator".into(),
                url.clone(),
            ],
        ),
        (
            "submit a sweep reading the runner's file",
            vec![
                "sh".into(),
                "-c".into(),
                format!(
                    "printf 'name = \"steal\"\\ndataset = \"{}\"\\n' > /tmp/steal-$$.toml && {jetsweep} submit /tmp/steal-$$.toml --coordinator {url}; r=$?; rm -f /tmp/steal-$$.toml; exit $r",
                    secret.display()
                ),
            ],
        ),
        ("the dashboard's API", api("")),
        (
            "read the state file",
            vec!["cat".into(), state.display().to_string()],
        ),
        (
            "list the state folder",
            vec![
                "ls".into(),
                state
                    .parent()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            ],
        ),
        (
            "read a worker's environment (the run's token)",
            vec!["cat".into(), format!("/proc/{worker_pid}/environ")],
        ),
        (
            "read the runner's file",
            vec!["cat".into(), secret.display().to_string()],
        ),
    ];
    for (what, args) in &tries {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, said) = as_nobody(&args);
        if ok {
            problems.push(format!("{what}: allowed ({})", said.trim()));
        } else {
            refused.push(*what);
        }
    }
    // A control: the same gRPC call as nobody, with the run's token (read here as root from the
    // worker's environment), is answered, so the refusals above are the token's doing and not,
    // say, a binary nobody may run or a port nobody may reach.
    let environ =
        std::fs::read(format!("/proc/{worker_pid}/environ")).map_err(|e| e.to_string())?;
    let token = environ
        .split(|b| *b == 0)
        .filter_map(|kv| std::str::from_utf8(kv).ok())
        .find_map(|kv| kv.strip_prefix("JETSWEEP_TOKEN="))
        .ok_or("no JETSWEEP_TOKEN in the worker's environment")?
        .to_string();
    let (ok, said) = as_nobody(&[
        "env",
        &format!("JETSWEEP_TOKEN={token}"),
        jetsweep,
        "status",
        "--coordinator",
        &url,
    ]);
    check(ok && said.contains("long"), || {
        format!("with the token, nobody's call was not answered: {said}")
    })?;
    let with_token = api(&format!("Authorization: Bearer {token}\\r\\n"));
    let with_token: Vec<&str> = with_token.iter().map(String::as_str).collect();
    let (ok, said) = as_nobody(&with_token);
    check(ok, || {
        format!("with the token, nobody's GET /api/sweeps failed: {said}")
    })?;
    // The run itself was not disturbed: it is still running.
    let alive = run.child.try_wait().map_err(|e| e.to_string())?.is_none();
    run.kill();
    check(alive, || {
        format!("the run ended early:\n{}", log_tail(&log, 20))
    })?;
    check(problems.is_empty(), || problems.join("; "))?;
    Ok(format!(
        "as user nobody, {} tries refused ({}), while the same call with the run's token is answered; the run went on",
        refused.len(),
        refused.join(", ")
    ))
}
