//! The `.npy` exchange layout shared with the PyTorch reference trainer (`shared/bench/README.md`):
//! a directory with `x_train.npy` (float32 `[N,16]`), `y_train.npy` (integer `[N]`), `x_test.npy`,
//! `y_test.npy`, and optionally `x_val.npy`/`y_val.npy`. Features in it are already scaled.
//!
//! Only what that layout needs is read and written: little-endian, C order, float32/float64
//! features, and integer labels of any common width.

use std::fs;
use std::path::Path;

use crate::cache::write_atomically;
use crate::dataset::{NUM_CLASSES, NUM_FEATURES, Prepared, Provenance, Split, f32s_to_le_bytes};
use crate::{DataError, Result};

const MAGIC: &[u8] = b"\x93NUMPY";

/// Array contents as read from a file.
#[derive(Debug, Clone, PartialEq)]
pub enum Array {
    F32 { shape: Vec<usize>, data: Vec<f32> },
    Int { shape: Vec<usize>, data: Vec<i64> },
}

fn header(descr: &str, shape: &[usize]) -> Vec<u8> {
    let dims = match shape {
        [n] => format!("({n},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut h = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {dims}, }}");
    // Pad so the data starts on a 64-byte boundary, as NumPy does.
    while !(MAGIC.len() + 4 + h.len() + 1).is_multiple_of(64) {
        h.push(' ');
    }
    h.push('\n');
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(h.len() as u16).to_le_bytes());
    out.extend_from_slice(h.as_bytes());
    out
}

/// Writes a float32 array of the given shape.
pub fn write_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    let mut bytes = header("<f4", shape);
    bytes.extend_from_slice(&f32s_to_le_bytes(data));
    write_atomically(path, &bytes)
}

/// Writes an int64 array of the given shape.
pub fn write_i64(path: &Path, shape: &[usize], data: &[i64]) -> Result<()> {
    let mut bytes = header("<i8", shape);
    bytes.extend(data.iter().flat_map(|v| v.to_le_bytes()));
    write_atomically(path, &bytes)
}

/// Reads an array written by NumPy (format versions 1–3).
pub fn read(path: &Path) -> Result<Array> {
    let bytes = fs::read(path).map_err(|e| DataError::io(path, e))?;
    let bad = |reason: String| DataError::BadFormat {
        path: path.to_path_buf(),
        reason,
    };
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(bad("not a .npy file (no NUMPY magic)".into()));
    }
    let (hlen, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize,
            12,
        ),
        v => return Err(bad(format!("unsupported .npy version {v}"))),
    };
    let text = bytes
        .get(start..start + hlen)
        .ok_or_else(|| bad("header runs past the end".into()))?;
    let text = String::from_utf8_lossy(text);
    let field = |key: &str| -> Option<String> {
        let at = text.find(&format!("'{key}':"))? + key.len() + 3;
        let rest = text[at..].trim_start();
        let end = if rest.starts_with('(') {
            rest.find(')')? + 1
        } else {
            rest.find([',', '}'])?
        };
        Some(rest[..end].trim().trim_matches('\'').to_string())
    };
    let descr = field("descr").ok_or_else(|| bad("header has no descr".into()))?;
    if field("fortran_order").as_deref() != Some("False") {
        return Err(bad(
            "Fortran-ordered arrays are not supported; save with np.ascontiguousarray".into(),
        ));
    }
    let shape_text = field("shape").ok_or_else(|| bad("header has no shape".into()))?;
    let shape: Vec<usize> = shape_text
        .trim_matches(|c| c == '(' || c == ')')
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse()
                .map_err(|_| bad(format!("bad shape {shape_text}")))
        })
        .collect::<Result<_>>()?;
    let count: usize = shape.iter().product();
    let data = &bytes[start + hlen..];
    let (width, kind) = match descr.as_str() {
        "<f4" => (4, 'f'),
        "<f8" => (8, 'f'),
        "|u1" | "|b1" => (1, 'u'),
        "|i1" => (1, 'i'),
        "<i2" => (2, 'i'),
        "<u2" => (2, 'u'),
        "<i4" => (4, 'i'),
        "<u4" => (4, 'u'),
        "<i8" => (8, 'i'),
        "<u8" => (8, 'u'),
        other => {
            return Err(bad(format!(
                "unsupported dtype {other}: use float32 features and integer labels"
            )));
        }
    };
    if data.len() != count * width {
        return Err(bad(format!(
            "{} data bytes, the header's shape {shape:?} of {descr} needs {}",
            data.len(),
            count * width
        )));
    }
    let chunks = data.chunks_exact(width);
    Ok(match (kind, width) {
        ('f', 4) => Array::F32 {
            shape,
            data: chunks
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect(),
        },
        ('f', _) => Array::F32 {
            shape,
            data: chunks
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32)
                .collect(),
        },
        (k, w) => Array::Int {
            shape,
            data: chunks
                .map(|c| {
                    let mut b = [0u8; 8];
                    b[..w].copy_from_slice(c);
                    if k == 'i' && c[w - 1] & 0x80 != 0 {
                        b[w..].fill(0xff); // sign-extend
                    }
                    i64::from_le_bytes(b)
                })
                .collect(),
        },
    })
}

/// Writes a prepared dataset in the exchange layout (and `provenance.json` beside it).
pub fn export_dir(prepared: &Prepared, dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    let mut parts = vec![("train", &prepared.train), ("test", &prepared.test)];
    if let Some(val) = &prepared.val {
        parts.push(("val", val));
    }
    for (name, split) in parts {
        write_f32(
            &dir.join(format!("x_{name}.npy")),
            &[split.len(), NUM_FEATURES],
            &split.x,
        )?;
        let labels: Vec<i64> = split.y.iter().map(|&y| i64::from(y)).collect();
        write_i64(&dir.join(format!("y_{name}.npy")), &[split.len()], &labels)?;
    }
    let json = serde_json::to_vec_pretty(&prepared.provenance).expect("provenance serialises");
    write_atomically(&dir.join("provenance.json"), &json)
}

/// Reads a directory in the exchange layout. Its features are taken as already scaled.
pub fn import_dir(dir: &Path) -> Result<Prepared> {
    let read_split = |name: &str| -> Result<Option<Split>> {
        let xp = dir.join(format!("x_{name}.npy"));
        let yp = dir.join(format!("y_{name}.npy"));
        if !xp.exists() && !yp.exists() {
            return Ok(None);
        }
        let bad = |path: &Path, reason: String| DataError::BadFormat {
            path: path.to_path_buf(),
            reason,
        };
        let x = match read(&xp)? {
            Array::F32 { shape, data } if shape.len() == 2 && shape[1] == NUM_FEATURES => data,
            Array::F32 { shape, .. } => {
                return Err(bad(
                    &xp,
                    format!("shape {shape:?}, expected [N, {NUM_FEATURES}]"),
                ));
            }
            Array::Int { .. } => return Err(bad(&xp, "features must be float32".into())),
        };
        let y = match read(&yp)? {
            Array::Int { shape, data }
                if shape.len() == 1 && shape[0] * NUM_FEATURES == x.len() =>
            {
                data
            }
            Array::Int { shape, .. } => {
                return Err(bad(
                    &yp,
                    format!(
                        "shape {shape:?}, expected [{}] to match x_{name}.npy",
                        x.len() / NUM_FEATURES
                    ),
                ));
            }
            Array::F32 { .. } => return Err(bad(&yp, "labels must be integers 0..4".into())),
        };
        let y = y
            .into_iter()
            .map(|v| {
                u8::try_from(v)
                    .ok()
                    .filter(|&v| (v as usize) < NUM_CLASSES)
                    .ok_or(v)
            })
            .collect::<Result<Vec<u8>, i64>>()
            .map_err(|v| bad(&yp, format!("label {v} is outside 0..{}", NUM_CLASSES - 1)))?;
        Ok(Some(Split { x, y }))
    };
    let missing = |name: &str| DataError::BadFormat {
        path: dir.to_path_buf(),
        reason: format!(
            "no x_{name}.npy/y_{name}.npy: an .npy dataset directory needs x_train, y_train, x_test, y_test"
        ),
    };
    let train = read_split("train")?.ok_or_else(|| missing("train"))?;
    let test = read_split("test")?.ok_or_else(|| missing("test"))?;
    let val = read_split("val")?;
    let mut prepared = Prepared {
        provenance: Provenance {
            source: format!("npy:{}", dir.display()),
            synthetic: false,
            source_sha256: None,
            raw_rows: train.len() + test.len() + val.as_ref().map_or(0, Split::len),
            duplicates_dropped: 0,
            train_rows: train.len(),
            val_rows: val.as_ref().map_or(0, Split::len),
            test_rows: test.len(),
            split_seed: 0,
            scaler_mean: Vec::new(),
            scaler_std: Vec::new(),
            sha256: String::new(),
        },
        train,
        val,
        test,
    };
    // A directory we exported says where its rows came from; keep that (synthetic or not).
    if let Ok(text) = fs::read(dir.join("provenance.json"))
        && let Ok(original) = serde_json::from_slice::<Provenance>(&text)
    {
        prepared.provenance.synthetic = original.synthetic;
        prepared.provenance.source = format!("npy:{} (from {})", dir.display(), original.source);
    }
    prepared.provenance.sha256 = prepared.content_sha256();
    Ok(prepared)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_then_import_keeps_every_number() {
        let dir = tempfile::tempdir().unwrap();
        let p = crate::synthetic::prepared(3_000, &Default::default()).unwrap();
        export_dir(&p, dir.path()).unwrap();
        let q = import_dir(dir.path()).unwrap();
        assert_eq!(
            (q.train.clone(), q.test.clone(), q.val.clone()),
            (p.train.clone(), p.test.clone(), None)
        );
        assert_eq!(q.provenance.sha256, p.provenance.sha256);
        assert!(q.provenance.synthetic);
    }

    #[test]
    fn reads_numpy_headers_of_other_widths() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("y.npy");
        // What `np.save("y.npy", np.array([0, 4, 2], dtype=np.uint8))` writes.
        let mut bytes = header("|u1", &[3]);
        bytes.extend_from_slice(&[0, 4, 2]);
        fs::write(&path, bytes).unwrap();
        assert_eq!(
            read(&path).unwrap(),
            Array::Int {
                shape: vec![3],
                data: vec![0, 4, 2]
            }
        );
        let mut bytes = header("<i4", &[2]);
        bytes.extend(
            (-1i32)
                .to_le_bytes()
                .iter()
                .chain(7i32.to_le_bytes().iter()),
        );
        fs::write(&path, bytes).unwrap();
        assert_eq!(
            read(&path).unwrap(),
            Array::Int {
                shape: vec![2],
                data: vec![-1, 7]
            }
        );
    }
}
