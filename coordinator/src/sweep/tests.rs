//! Sweep files: parsing, validation, expansion and job identity, checked on good and bad files.

use super::*;

const LAB: &str = r#"
name = "lab1-batch-size"
dataset = "synthetic"
attempts = 2
lease_timeout_s = 10

[defaults]
model = "jsc-tiny"
max_epochs = 10
learning_rate = 1e-3

[grid]
batch_size = [64, 128, 256, 512]
seed = [0, 1, 2]
"#;

#[test]
fn a_grid_expands_to_its_cartesian_product_over_the_defaults() {
    let spec = SweepSpec::parse(LAB).unwrap();
    assert_eq!(spec.cells(), 12);
    let trials = spec.trials();
    assert_eq!(trials.len(), 12);
    assert_eq!(
        trials[0],
        Trial {
            model: "jsc-tiny".parse().unwrap(),
            optimizer: Optimizer::Adam,
            batch_size: 64,
            max_epochs: 10,
            learning_rate: 1e-3,
            seed: 0,
            weight_decay: 0.0,
        }
    );
    assert_eq!(trials[2].seed, 2);
    assert_eq!(trials[3].batch_size, 128);
    assert_eq!(
        (spec.attempts, spec.lease_timeout),
        (2, Duration::from_secs(10))
    );
    let ids: std::collections::HashSet<String> = trials.iter().map(|t| job_id(t, "abc")).collect();
    assert_eq!(ids.len(), 12, "every cell has its own id");
}

#[test]
fn job_ids_depend_on_everything_that_determines_a_result_and_nothing_else() {
    let t = SweepSpec::parse(LAB).unwrap().trials()[0].clone();
    let id = job_id(&t, "d1");
    assert_eq!(id, job_id(&t.clone(), "d1"));
    assert_eq!(
        id,
        job_id(
            &Trial {
                learning_rate: 0.001,
                ..t.clone()
            },
            "d1"
        )
    );
    assert_ne!(id, job_id(&t, "d2"));
    for other in [
        Trial {
            seed: 9,
            ..t.clone()
        },
        Trial {
            batch_size: 65,
            ..t.clone()
        },
        Trial {
            max_epochs: 11,
            ..t.clone()
        },
        Trial {
            learning_rate: 2e-3,
            ..t.clone()
        },
        Trial {
            model: "jsc-toy".parse().unwrap(),
            ..t.clone()
        },
    ] {
        assert_ne!(id, job_id(&other, "d1"), "{other:?}");
    }
}

#[test]
fn the_example_sweep_files_are_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../sweeps");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let spec = SweepSpec::parse(&std::fs::read_to_string(&path).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(spec.cells() >= 8, "{}", path.display());
            n += 1;
        }
    }
    assert!(n >= 5);
}

#[test]
fn bad_sweep_files_are_refused_with_what_is_wrong() {
    for bad in crate::testkit::bad_sweeps::all() {
        let err = SweepSpec::parse(&bad.toml)
            .err()
            .unwrap_or_else(|| panic!("{} was accepted", bad.what))
            .to_string();
        for n in bad.names {
            assert!(err.contains(n), "{}: {err:?} lacks {n:?}", bad.what);
        }
    }
}

#[test]
fn a_served_sweep_names_files_only_where_the_coordinator_allows() {
    let text = "name = \"x\"\ndataset = \"/etc/passwd.csv\"\n";
    let err = SweepSpec::parse_with(text, &DataAccess::BuiltInOnly).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Dataset {
                problem: DatasetProblem::Forbidden,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("--data-root"), "{err}");
    SweepSpec::parse_with(
        "name = \"x\"\ndataset = \"synthetic:500\"\n",
        &DataAccess::BuiltInOnly,
    )
    .expect("built-in sources need no files");
}
