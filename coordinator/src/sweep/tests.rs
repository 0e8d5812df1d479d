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
            seed: 0
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

fn refused(text: &str, needles: &[&str]) {
    let err = SweepSpec::parse(text).unwrap_err().to_string();
    for n in needles {
        assert!(err.contains(n), "{err:?} lacks {n:?}");
    }
}

#[test]
fn bad_sweep_files_are_refused_with_what_is_wrong() {
    refused("name = \"x\"\nbatchsize = 3\n", &["batchsize"]);
    refused("name = \"x\"\n[grid]\nbatch_sise = [1]\n", &["batch_sise"]);
    refused("name = \"x\"\n[grid]\nseed = []\n", &["grid.seed", "empty"]);
    refused(
        "name = \"x\"\n[grid]\nbatch_size = [64, 0]\n",
        &["batch_size", "0"],
    );
    refused(
        "name = \"x\"\n[grid]\nlearning_rate = [1e-3, -1e-3]\n",
        &["learning_rate", "-0.001"],
    );
    refused(
        "name = \"x\"\n[defaults]\nlearning_rate = 0.0\n",
        &["learning_rate", "0"],
    );
    refused(
        "name = \"x\"\n[grid]\nlearning_rate = [nan]\n",
        &["learning_rate", "NaN"],
    );
    refused(
        "name = \"x\"\n[grid]\nmodel = [\"jsc-tiny\", \"resnet50\"]\n",
        &["model", "resnet50"],
    );
    refused(
        "name = \"x\"\ndataset = \"imagenet\"\n",
        &["dataset", "imagenet"],
    );
    refused(
        "name = \"x\"\n[grid]\noptimizer = [\"lbfgs\"]\n",
        &["optimizer", "lbfgs"],
    );
    refused("name = \"x\"\nattempts = 0\n", &["attempts"]);
    refused(
        "name = \"x\"\nattempts = 4000000000\n",
        &["attempts", "1 to 100"],
    );
    refused(
        &format!("name = \"{}\"\n", "n".repeat(129)),
        &["name", "at most 128"],
    );
    refused(
        "name = \"x\"\ndataset = \"synthetic:1000000000\"\n",
        &["dataset", "at most 1000000"],
    );
    refused(
        &format!(
            "name = \"x\"\n[defaults]\nmodel = \"mlp:{}\"\n",
            vec!["8"; 17].join(",")
        ),
        &["model", "at most 16 hidden layers"],
    );
    refused(
        &format!("name = \"x\"\n# {}\n", "x".repeat(300_000)),
        &["bytes", "262144"],
    );
    refused(
        "name = \"x\"\nlease_timeout_s = 1\n",
        &["lease_timeout_s", "three heartbeats"],
    );
    refused(
        "name = \"x\"\n[defaults]\nmax_epochs = 4294967295\n",
        &["max_epochs", "4294967295"],
    );
    refused("name = \"x\"\n[grid]\nbatch_size = [-1]\n", &["batch_size"]);
    refused("name = \"x\"\n[grid\n", &["sweep file"]);
    refused("dataset = \"synthetic\"\n", &["name"]);
    let big = format!(
        "name = \"x\"\n[grid]\nseed = [{}]\nbatch_size = [{}]\n",
        (0..1000)
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(","),
        (1..=101)
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(",")
    );
    refused(&big, &["101000 cells", "100000"]);
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
