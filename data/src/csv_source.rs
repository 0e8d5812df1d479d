//! Jets from a CSV file the user already has (for example OpenML's table exported with pandas):
//! a header row naming the 16 features (with or without MASE's `j_` prefix) and the class, given as
//! a `label`/`class` column (names g,q,w,z,t or MASE indices 0..4) or as one-hot `j_g,j_q,j_w,j_z,j_t`.

use std::path::Path;

use crate::dataset::{FEATURE_NAMES, NUM_FEATURES, RawTable, parse_label};
use crate::{DataError, Result};

/// The one-hot label columns MASE's HDF5 file uses, in MASE's class order.
pub const ONE_HOT_COLUMNS: [&str; 5] = ["j_g", "j_q", "j_w", "j_z", "j_t"];

enum LabelColumns {
    Single(usize),
    OneHot([usize; 5]),
}

/// Finds a column by MASE name (`j_zlogz`) or OpenML name (`zlogz`), ignoring case.
fn find(headers: &[String], name: &str) -> Option<usize> {
    let bare = name.strip_prefix("j_").unwrap_or(name);
    headers.iter().position(|h| {
        let h = h.trim().to_ascii_lowercase();
        h == name || h == bare
    })
}

pub fn read(path: &Path) -> Result<RawTable> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| DataError::BadFormat {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| DataError::BadFormat {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?
        .iter()
        .map(str::to_string)
        .collect();
    let missing = |column: &str| DataError::MissingColumn {
        path: path.to_path_buf(),
        column: column.to_string(),
        found: headers.join(","),
    };
    let mut feature_cols = [0usize; NUM_FEATURES];
    for (slot, name) in feature_cols.iter_mut().zip(FEATURE_NAMES) {
        *slot = find(&headers, name).ok_or_else(|| missing(name))?;
    }
    let labels = if let Some(i) = find(&headers, "label").or_else(|| find(&headers, "class")) {
        LabelColumns::Single(i)
    } else if find(&headers, ONE_HOT_COLUMNS[0]).is_some() {
        let mut cols = [0usize; 5];
        for (slot, name) in cols.iter_mut().zip(ONE_HOT_COLUMNS) {
            // The bare names (g, q, …) are too short to match safely: require the j_ prefix.
            *slot = headers
                .iter()
                .position(|h| h.trim().eq_ignore_ascii_case(name))
                .ok_or_else(|| missing(name))?;
        }
        LabelColumns::OneHot(cols)
    } else {
        return Err(missing("label"));
    };

    let mut table = RawTable::default();
    for record in reader.records() {
        let record = record.map_err(|e| DataError::BadFormat {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let line = record.position().map_or(0, csv::Position::line);
        let bad = |reason: String| DataError::BadRow {
            path: path.to_path_buf(),
            line,
            reason,
        };
        let cell = |i: usize| record.get(i).unwrap_or("");
        let mut row = [0f32; NUM_FEATURES];
        for ((v, &col), name) in row.iter_mut().zip(&feature_cols).zip(FEATURE_NAMES) {
            *v = cell(col)
                .parse()
                .map_err(|_| bad(format!("{name} = {:?} is not a number", cell(col))))?;
        }
        let label = match &labels {
            LabelColumns::Single(i) => parse_label(cell(*i)).ok_or_else(|| {
                bad(format!(
                    "label {:?} is not one of g,q,w,z,t or 0..4",
                    cell(*i)
                ))
            })?,
            LabelColumns::OneHot(cols) => {
                let values: Vec<f32> = cols
                    .iter()
                    .map(|&c| cell(c).parse().unwrap_or(f32::NAN))
                    .collect();
                let hot = values
                    .iter()
                    .enumerate()
                    .filter(|(_, v)| **v > 0.5)
                    .map(|(i, _)| i as u8)
                    .collect::<Vec<_>>();
                match hot.as_slice() {
                    [one] => *one,
                    _ => {
                        return Err(bad(format!(
                            "one-hot label columns {values:?} do not mark exactly one class"
                        )));
                    }
                }
            }
        };
        table.push(&row, label);
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BARE: [&str; 16] = [
        "zlogz",
        "c1_b0_mmdt",
        "c1_b1_mmdt",
        "c1_b2_mmdt",
        "c2_b1_mmdt",
        "c2_b2_mmdt",
        "d2_b1_mmdt",
        "d2_b2_mmdt",
        "d2_a1_b1_mmdt",
        "d2_a1_b2_mmdt",
        "m2_b1_mmdt",
        "m2_b2_mmdt",
        "n2_b1_mmdt",
        "n2_b2_mmdt",
        "mass_mmdt",
        "multiplicity",
    ];

    fn write(dir: &Path, header: &str, rows: &[String]) -> std::path::PathBuf {
        let path = dir.join("jets.csv");
        std::fs::write(&path, format!("{header}\n{}\n", rows.join("\n"))).unwrap();
        path
    }

    #[test]
    fn openml_names_with_class_names_map_to_mase_order() {
        let dir = tempfile::tempdir().unwrap();
        let header = format!("{},class", BARE.join(","));
        let rows: Vec<String> = ["g", "q", "t", "w", "z"]
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{},{c}", vec![i.to_string(); 16].join(",")))
            .collect();
        let t = read(&write(dir.path(), &header, &rows)).unwrap();
        assert_eq!(t.labels, vec![0, 1, 4, 2, 3]);
        assert_eq!(t.row(2), &[2.0; 16]);
    }

    #[test]
    fn mase_names_with_one_hot_labels() {
        let dir = tempfile::tempdir().unwrap();
        let header = format!("{},j_g,j_q,j_w,j_z,j_t,extra", FEATURE_NAMES.join(","));
        let rows = vec![format!("{},0,0,1,0,0,x", vec!["1.5"; 16].join(","))];
        let t = read(&write(dir.path(), &header, &rows)).unwrap();
        assert_eq!(t.labels, vec![2]);
    }

    #[test]
    fn a_missing_column_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let header = format!("{},label", BARE[..15].join(","));
        let rows = vec![format!("{},0", vec!["1"; 15].join(","))];
        let err = read(&write(dir.path(), &header, &rows)).unwrap_err();
        assert!(err.to_string().contains("\"j_multiplicity\""), "{err}");
        let header = BARE.join(",");
        let err = read(&write(dir.path(), &header, &[vec!["1"; 16].join(",")])).unwrap_err();
        assert!(err.to_string().contains("\"label\""), "{err}");
    }

    #[test]
    fn a_bad_cell_names_line_and_value() {
        let dir = tempfile::tempdir().unwrap();
        let header = format!("{},label", BARE.join(","));
        let rows = vec![
            format!("{},0", vec!["1"; 16].join(",")),
            format!("{},0", vec!["oops"; 16].join(",")),
        ];
        let err = read(&write(dir.path(), &header, &rows))
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 3") && err.contains("oops"), "{err}");
    }
}
