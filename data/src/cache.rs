//! The on-disk format of a prepared dataset (`.jsd`): compact, versioned and checksummed, so a worker
//! loads one in a few milliseconds and a truncated or corrupted copy is refused, never trained on.
//!
//! Layout (all integers little-endian):
//! ```text
//! magic    16 bytes  "JETSWEEP-DATASET"
//! version  u32       FORMAT_VERSION
//! hlen     u32       length of the JSON header
//! header   hlen      JSON: the Provenance record and the split sizes
//! arrays             train x (f32, rows*16), train y (u8), val x, val y, test x, test y
//! sha256   32 bytes  of every byte above
//! ```

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::dataset::{
    NUM_FEATURES, Prepared, Provenance, Split, f32s_from_le_bytes, f32s_to_le_bytes,
};
use crate::{DataError, Result};

const MAGIC: &[u8; 16] = b"JETSWEEP-DATASET";
/// Bumped whenever the layout changes; older files are then refused and prepared again.
pub const FORMAT_VERSION: u32 = 1;
/// File name extension of a prepared dataset.
pub const EXTENSION: &str = "jsd";
const DIGEST_LEN: usize = 32;

#[derive(Serialize, Deserialize)]
struct Header {
    provenance: Provenance,
    train_rows: usize,
    val_rows: Option<usize>,
    test_rows: usize,
}

/// The whole file as bytes (what the coordinator ships to workers).
pub fn encode(prepared: &Prepared) -> Vec<u8> {
    let header = Header {
        provenance: prepared.provenance.clone(),
        train_rows: prepared.train.len(),
        val_rows: prepared.val.as_ref().map(Split::len),
        test_rows: prepared.test.len(),
    };
    let header = serde_json::to_vec(&header).expect("a header of plain data always serialises");
    let mut out = Vec::with_capacity(64 + header.len() + prepared.provenance.train_rows * 68 * 2);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    out.extend_from_slice(&header);
    let empty = Split::default();
    for split in [
        &prepared.train,
        prepared.val.as_ref().unwrap_or(&empty),
        &prepared.test,
    ] {
        out.extend_from_slice(&f32s_to_le_bytes(&split.x));
        out.extend_from_slice(&split.y);
    }
    let digest = Sha256::digest(&out);
    out.extend_from_slice(&digest);
    out
}

/// Parses and verifies a whole file's bytes; `path` only names the file in errors.
pub fn decode(bytes: &[u8], path: &Path) -> Result<Prepared> {
    let corrupt = |reason: String| DataError::CorruptCache {
        path: path.to_path_buf(),
        reason,
    };
    if bytes.len() < MAGIC.len() + 8 + DIGEST_LEN || &bytes[..MAGIC.len()] != MAGIC {
        return Err(corrupt(
            "it does not start with the jetsweep dataset header".into(),
        ));
    }
    let version = u32::from_le_bytes(bytes[16..20].try_into().unwrap());
    if version != FORMAT_VERSION {
        return Err(corrupt(format!(
            "format version {version}, this build reads version {FORMAT_VERSION}"
        )));
    }
    let (body, digest) = bytes.split_at(bytes.len() - DIGEST_LEN);
    if Sha256::digest(body).as_slice() != digest {
        return Err(corrupt("checksum mismatch (truncated or modified)".into()));
    }
    let hlen = u32::from_le_bytes(bytes[20..24].try_into().unwrap()) as usize;
    let header_end = 24usize
        .checked_add(hlen)
        .filter(|&e| e <= body.len())
        .ok_or_else(|| corrupt("header length past the end".into()))?;
    let header: Header = serde_json::from_slice(&body[24..header_end])
        .map_err(|e| corrupt(format!("unreadable header: {e}")))?;
    let mut rest = &body[header_end..];
    let mut take = |rows: usize| -> Result<Split> {
        let need = rows * (NUM_FEATURES * 4 + 1);
        if rest.len() < need {
            return Err(corrupt(format!(
                "arrays shorter than the header's {rows} rows"
            )));
        }
        let (xb, tail) = rest.split_at(rows * NUM_FEATURES * 4);
        let (yb, tail) = tail.split_at(rows);
        rest = tail;
        Ok(Split {
            x: f32s_from_le_bytes(xb),
            y: yb.to_vec(),
        })
    };
    let train = take(header.train_rows)?;
    let val = take(header.val_rows.unwrap_or(0))?;
    let test = take(header.test_rows)?;
    if !rest.is_empty() {
        return Err(corrupt(format!(
            "{} unexpected bytes after the arrays",
            rest.len()
        )));
    }
    if let Some(bad) = [&train, &val, &test]
        .iter()
        .flat_map(|s| s.y.iter())
        .find(|&&y| y as usize >= crate::NUM_CLASSES)
    {
        return Err(corrupt(format!("label {bad} out of range 0..5")));
    }
    Ok(Prepared {
        train,
        val: header.val_rows.map(|_| val),
        test,
        provenance: header.provenance,
    })
}

/// Writes a prepared dataset atomically: a temporary file in the same folder, then a rename, so a
/// reader never sees half a file and a crash leaves no partial cache entry.
pub fn save(prepared: &Prepared, path: &Path) -> Result<()> {
    write_atomically(path, &encode(prepared))
}

/// Reads and verifies a prepared dataset file.
pub fn load(path: &Path) -> Result<Prepared> {
    let bytes = fs::read(path).map_err(|e| DataError::io(path, e))?;
    decode(&bytes, path)
}

/// `bytes` to `path` through a temporary sibling and a rename.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    }
    let tmp = temp_sibling(path);
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(DataError::io(path, e));
    }
    Ok(())
}

/// A hidden temporary name next to `path`, unique to this call: two threads (two sweeps naming
/// the same dataset at once) or two processes writing the same file never share one, so neither
/// renames away the other's.
pub(crate) fn temp_sibling(path: &Path) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    path.with_file_name(format!(".{name}.{}.{n}.partial", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic;

    fn sample() -> Prepared {
        synthetic::prepared(
            2_000,
            &crate::preprocess::PrepareOptions {
                val_fraction: 0.1,
                ..Default::default()
            },
        )
        .unwrap()
    }

    #[test]
    fn threads_saving_the_same_file_at_once_all_succeed() {
        // Two sweeps naming one dataset at once prepare it on two threads of one process.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("same.jsd");
        let prepared = sample();
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..8).map(|_| s.spawn(|| save(&prepared, &path))).collect();
            for h in handles {
                h.join().unwrap().unwrap();
            }
        });
        assert_eq!(load(&path).unwrap().train.x, prepared.train.x);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary left"
        );
    }

    #[test]
    fn round_trip_is_exact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsd");
        let p = sample();
        save(&p, &path).unwrap();
        assert_eq!(load(&path).unwrap(), p);
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn truncated_or_modified_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsd");
        let bytes = encode(&sample());
        for (what, data) in [
            ("truncated", bytes[..bytes.len() - 100].to_vec()),
            ("flipped", {
                let mut b = bytes.clone();
                b[5000] ^= 1;
                b
            }),
            ("empty", Vec::new()),
            (
                "foreign",
                b"hello world, this is not a dataset at all......".to_vec(),
            ),
        ] {
            fs::write(&path, &data).unwrap();
            let err = load(&path).unwrap_err();
            assert!(
                matches!(err, DataError::CorruptCache { .. }),
                "{what}: {err}"
            );
            assert!(err.to_string().contains("a.jsd"), "{what}: {err}");
        }
    }
}
