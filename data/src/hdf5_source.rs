//! MASE's own file, `processed-pythia82-lhc13-all-pt1-50k-r1_h022_e0175_t220_nonu_truth.z`: HDF5
//! despite its name, with the compound dataset `t_allpar_new` whose named fields include the 16
//! features and the one-hot labels `j_g, j_q, j_w, j_z, j_t`. Only those 21 fields are read (HDF5
//! converts the compound to our subset by name). Needs the system HDF5 library: the `hdf5` feature.

use std::path::Path;

use hdf5::types::TypeDescriptor;

use crate::csv_source::ONE_HOT_COLUMNS;
use crate::dataset::{FEATURE_NAMES, NUM_FEATURES, RawTable};
use crate::{DataError, Result};

/// The table MASE reads (`h5py.File(path)['t_allpar_new']`).
pub const TABLE: &str = "t_allpar_new";

/// One row of the fields we need, in memory; HDF5 converts the file's types (f32, f64, ints) to f32.
#[derive(hdf5::H5Type, Clone, Copy, Debug)]
#[repr(C)]
struct Jet {
    j_zlogz: f32,
    j_c1_b0_mmdt: f32,
    j_c1_b1_mmdt: f32,
    j_c1_b2_mmdt: f32,
    j_c2_b1_mmdt: f32,
    j_c2_b2_mmdt: f32,
    j_d2_b1_mmdt: f32,
    j_d2_b2_mmdt: f32,
    j_d2_a1_b1_mmdt: f32,
    j_d2_a1_b2_mmdt: f32,
    j_m2_b1_mmdt: f32,
    j_m2_b2_mmdt: f32,
    j_n2_b1_mmdt: f32,
    j_n2_b2_mmdt: f32,
    j_mass_mmdt: f32,
    j_multiplicity: f32,
    j_g: f32,
    j_q: f32,
    j_w: f32,
    j_z: f32,
    j_t: f32,
}

pub fn read(path: &Path) -> Result<RawTable> {
    let err = |reason: String| DataError::Hdf5 {
        path: path.to_path_buf(),
        reason,
    };
    let file = hdf5::File::open(path).map_err(|e| err(format!("cannot open: {e}")))?;
    let ds = file.dataset(TABLE).map_err(|e| {
        err(format!(
            "no dataset {TABLE:?} ({e}); is this MASE's JSC file?"
        ))
    })?;
    let fields: Vec<String> = match ds.dtype().and_then(|t| t.to_descriptor()) {
        Ok(TypeDescriptor::Compound(c)) => c.fields.into_iter().map(|f| f.name).collect(),
        Ok(other) => {
            return Err(err(format!(
                "{TABLE} is not a table of named fields (its type is {other:?})"
            )));
        }
        Err(e) => return Err(err(format!("cannot read the type of {TABLE}: {e}"))),
    };
    for name in FEATURE_NAMES.iter().chain(ONE_HOT_COLUMNS.iter()) {
        if !fields.iter().any(|f| f == name) {
            return Err(DataError::MissingColumn {
                path: path.to_path_buf(),
                column: name.to_string(),
                found: fields.join(","),
            });
        }
    }
    let jets: Vec<Jet> = ds
        .as_reader()
        .conversion(hdf5::Conversion::Soft)
        .read_raw()
        .map_err(|e| err(format!("cannot read {TABLE}: {e}")))?;
    let mut table = RawTable {
        features: Vec::with_capacity(jets.len() * NUM_FEATURES),
        labels: Vec::with_capacity(jets.len()),
    };
    for (i, j) in jets.iter().enumerate() {
        let f = [
            j.j_zlogz,
            j.j_c1_b0_mmdt,
            j.j_c1_b1_mmdt,
            j.j_c1_b2_mmdt,
            j.j_c2_b1_mmdt,
            j.j_c2_b2_mmdt,
            j.j_d2_b1_mmdt,
            j.j_d2_b2_mmdt,
            j.j_d2_a1_b1_mmdt,
            j.j_d2_a1_b2_mmdt,
            j.j_m2_b1_mmdt,
            j.j_m2_b2_mmdt,
            j.j_n2_b1_mmdt,
            j.j_n2_b2_mmdt,
            j.j_mass_mmdt,
            j.j_multiplicity,
        ];
        // MASE takes the argmax of the one-hot columns (g, q, w, z, t).
        let onehot = [j.j_g, j.j_q, j.j_w, j.j_z, j.j_t];
        let label = onehot
            .iter()
            .enumerate()
            .fold((0usize, f32::NEG_INFINITY), |best, (k, &v)| {
                if v > best.1 { (k, v) } else { best }
            })
            .0;
        if onehot.iter().all(|&v| v <= 0.0) {
            return Err(DataError::BadRow {
                path: path.to_path_buf(),
                line: i as u64,
                reason: format!("row {i} has no class set in j_g..j_t"),
            });
        }
        table.push(&f, label as u8);
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 30-row table in MASE's layout (extra fields, i32 one-hot labels, row 7 duplicating row 2),
    /// written with h5py.
    const FIXTURE: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/mase-jsc-sample.h5"
    );

    #[test]
    fn reads_the_21_fields_and_the_one_hot_labels() {
        let t = read(Path::new(FIXTURE)).unwrap();
        assert_eq!(t.rows(), 30);
        assert_eq!(&t.labels[..6], &[0, 1, 2, 3, 4, 0]);
        assert_eq!(t.row(7), t.row(2));
        let (dedup, dropped) = crate::preprocess::drop_duplicates(t);
        assert_eq!((dedup.rows(), dropped), (29, 1));
    }

    #[test]
    fn a_file_without_the_table_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("other.h5");
        hdf5::File::create(&path)
            .unwrap()
            .new_dataset::<f32>()
            .shape([3])
            .create("x")
            .unwrap();
        let err = read(&path).unwrap_err().to_string();
        assert!(
            err.contains("t_allpar_new") && err.contains("other.h5"),
            "{err}"
        );
    }
}
