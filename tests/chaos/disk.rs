//! A full disk: the coordinator's state file lives on a small tmpfs that is then filled. Writes
//! must be refused (not crash the coordinator, not corrupt what was stored), and once space is
//! freed the same request must succeed, with the earlier sweep intact. Needs root (to mount).

use std::process::Command;
use std::time::Duration;

use crate::common::*;

/// Unmounts the tmpfs when the scenario ends, however it ends.
struct Mounted(std::path::PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn many_seeds(name: &str, n: usize) -> String {
    format!(
        "name = \"{name}\"\ndataset = \"synthetic:2000\"\n[grid]\nseed = [{}]\n",
        (0..n).map(|s| s.to_string()).collect::<Vec<_>>().join(",")
    )
}

pub async fn run(_size: Size) -> Outcome {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => return Outcome::Failed(e.to_string()),
    };
    let disk = dir.path().join("disk");
    let _ = std::fs::create_dir(&disk);
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
        .arg(&disk)
        .output();
    match mounted {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            return Outcome::Skipped(format!(
                "cannot mount a tmpfs here ({}); run as root",
                String::from_utf8_lossy(&o.stderr).trim()
            ));
        }
        Err(e) => return Outcome::Skipped(format!("no mount command: {e}")),
    }
    let _guard = Mounted(disk.clone());
    full_disk(&disk, &dir.path().join("data")).await.into()
}

async fn full_disk(disk: &std::path::Path, data: &std::path::Path) -> Checked<String> {
    let data_dir = data.to_string_lossy().into_owned();
    let (coord, url) = coordinator_with(disk, "127.0.0.1:0", "disk", &["--data-dir", &data_dir]);
    let first = submit(&url, &many_seeds("before", 50)).await.sweep_id;
    // Fill what is left of the tmpfs.
    let filler = disk.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).map_err(|e| e.to_string())?;
        let block = vec![0u8; 64 << 10];
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
    }
    let mut c = client(&url).await;
    let big = many_seeds("during", 5_000);
    let refused = c.submit(big.clone()).await;
    let refusal = match refused {
        Ok(_) => return Err("a 5,000-cell sweep was accepted on a full disk".into()),
        Err(s) => s,
    };
    std::fs::remove_file(&filler).map_err(|e| e.to_string())?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let accepted = poll(
        Duration::from_secs(20),
        "the submit to succeed once space is free",
        || {
            let mut c = c.clone();
            let toml = big.clone();
            async move { c.submit(toml).await.ok() }
        },
    )
    .await?;
    let before = try_sweep(&url, &first)
        .await
        .ok_or("the earlier sweep is no longer readable")?;
    check(before.total == 50 && accepted.total == 5_000, || {
        format!("{} and {} jobs", before.total, accepted.total)
    })?;
    check(
        std::fs::metadata(format!("/proc/{}", coord.child.id())).is_ok(),
        || "the coordinator died".into(),
    )?;
    Ok(format!(
        "on a full disk a 5,000-cell submit was refused ({:?}: {}); after freeing space it was accepted, the earlier sweep intact",
        refusal.code(),
        refusal.message().chars().take(120).collect::<String>()
    ))
}
