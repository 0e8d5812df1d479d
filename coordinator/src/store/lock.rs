//! One coordinator per state file. Two coordinators writing one SQLite file would each lease the
//! same jobs; so `serve` and `run` hold an exclusive lock on `<state>.lock` for as long as they
//! run, with the holder's pid and address written in it, and a second one refuses to start,
//! naming them. The kernel drops the lock when the process ends, however it ends (SIGKILL too), so a
//! restart never finds a stale lock.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use crate::Error;

/// Held while the coordinator runs; released when dropped.
#[derive(Debug)]
pub struct StateLock {
    file: File,
    path: PathBuf,
}

impl StateLock {
    /// Takes the lock of the state file `state`, or says who holds it.
    pub fn acquire(state: &Path) -> Result<StateLock, Error> {
        let path = PathBuf::from(format!("{}.lock", state.display()));
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::Open {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        // std's lock is flock(2) on Unix: tied to this open file, dropped with the process.
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::Error(e)) => {
                return Err(Error::Open {
                    path,
                    reason: e.to_string(),
                });
            }
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                return Err(Error::StateInUse {
                    path: state.to_path_buf(),
                    holder: holder.trim().chars().take(200).collect(),
                });
            }
        }
        Ok(StateLock { file, path })
    }

    /// Writes who holds the lock (shown to a second coordinator that tries to start).
    pub fn describe(&mut self, holder: &str) -> Result<(), Error> {
        let write = |file: &mut File| -> std::io::Result<()> {
            file.set_len(0)?;
            file.rewind()?;
            writeln!(file, "pid {}, {holder}", std::process::id())
        };
        write(&mut self.file).map_err(|e| Error::Open {
            path: self.path.clone(),
            reason: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_name_until_it_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state.db");
        let mut first = StateLock::acquire(&state).unwrap();
        first.describe("http://127.0.0.1:7070").unwrap();
        let err = StateLock::acquire(&state).unwrap_err().to_string();
        assert!(
            err.contains("state.db")
                && err.contains(&format!("pid {}", std::process::id()))
                && err.contains("127.0.0.1:7070"),
            "{err}"
        );
        drop(first);
        StateLock::acquire(&state).expect("free again once the holder is gone");
    }
}
