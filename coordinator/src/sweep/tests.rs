//! Sweep files: parsing, validation, expansion and job identity, checked on good and bad files.

use super::search::{Mode, Rule};
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

/// A random search over three keys, crossed with two models and three seeds.
const SEARCH: &str = r#"
name = "search"
val_fraction = 0.2
[search]
method = "random"
points = 6
search_seed = 7
[search.space]
learning_rate = { log_uniform = [1e-5, 1e-1] }
batch_size    = { choice = [64, 128, 256, 512] }
weight_decay  = { uniform = [0.0, 1e-3] }
[grid]
model = ["jsc-tiny", "jsc-toy"]
seed = [0, 1, 2]
"#;

#[test]
fn tpe_draws_its_startup_points_and_halves_asynchronously() {
    let file = "name = \"t\"\nval_fraction = 0.2\n[search]\nmethod = \"tpe\"\npoints = 40\nsearch_seed = 2\n[search.space]\nlearning_rate = { log_uniform = [1e-4, 1e-2] }\n[search.stop]\nrule = \"halving\"\n[grid]\nseed = [0, 1]\n";
    let spec = SweepSpec::parse(file).unwrap();
    assert_eq!(
        spec.points.len(),
        10,
        "the startup points; the rest are suggested"
    );
    assert_eq!(spec.cells(), 80, "the job limit counts every point");
    assert_eq!(spec.trials().len(), 20);
    assert_eq!(
        spec.search.stop.mode,
        Mode::Async,
        "TPE halves asynchronously"
    );
    // The startup points are the random search's first ten.
    let random = SweepSpec::parse(
        &file
            .replace("\"tpe\"", "\"random\"")
            .replace("[search.stop]\nrule = \"halving\"\n", ""),
    )
    .unwrap();
    assert_eq!(spec.points[..], random.points[..10]);
}

#[test]
fn drawn_points_cross_the_grid_with_the_seeds_of_a_point_adjacent() {
    let spec = SweepSpec::parse(SEARCH).unwrap();
    assert_eq!(spec.cells(), 6 * 2 * 3);
    let trials = spec.trials();
    assert_eq!(trials.len(), 36);
    for point in trials.chunks(3) {
        assert_eq!(point.iter().map(|t| t.seed).collect::<Vec<_>>(), [0, 1, 2]);
        assert!(point.iter().all(|t| Trial {
            seed: 0,
            ..t.clone()
        } == Trial {
            seed: 0,
            ..point[0].clone()
        }));
    }
    // A drawn point runs on every grid cell: the same draw for jsc-tiny and jsc-toy.
    let (tiny, toy) = (&trials[0], &trials[3]);
    assert_eq!(
        (tiny.model.name.as_str(), toy.model.name.as_str()),
        ("jsc-tiny", "jsc-toy")
    );
    assert_eq!(
        (tiny.learning_rate, tiny.batch_size, tiny.weight_decay),
        (toy.learning_rate, toy.batch_size, toy.weight_decay)
    );
    let mut configs = std::collections::HashSet::new();
    for t in &trials {
        assert!((1e-5..=1e-1).contains(&t.learning_rate), "{t:?}");
        assert!([64, 128, 256, 512].contains(&t.batch_size), "{t:?}");
        assert!((0.0..=1e-3).contains(&t.weight_decay), "{t:?}");
        configs.insert((
            t.learning_rate.to_bits(),
            t.batch_size,
            t.weight_decay.to_bits(),
        ));
    }
    assert_eq!(configs.len(), 6, "six distinct points");
}

#[test]
fn the_same_file_and_search_seed_give_the_same_points_in_the_same_order() {
    let a = SweepSpec::parse(SEARCH).unwrap().trials();
    assert_eq!(a, SweepSpec::parse(SEARCH).unwrap().trials());
    let other = SweepSpec::parse(&SEARCH.replace("search_seed = 7", "search_seed = 8")).unwrap();
    assert_ne!(a, other.trials());
    // A point is a function of the seed and its index: asking for more points keeps the first.
    let more = SweepSpec::parse(&SEARCH.replace("points = 6", "points = 20")).unwrap();
    assert_eq!(more.cells(), 20 * 6);
    assert_eq!(a[..], more.trials()[..36]);
    // Resubmission finds the same jobs.
    let ids = |t: &[Trial]| t.iter().map(|t| job_id(t, "d")).collect::<Vec<_>>();
    assert_eq!(ids(&a), ids(&SweepSpec::parse(SEARCH).unwrap().trials()));
}

#[test]
fn sobol_points_cover_the_log_range_evenly() {
    let spec = SweepSpec::parse(
        r#"
name = "sobol"
val_fraction = 0.2
[search]
method = "sobol"
points = 16
search_seed = 3
[search.space]
learning_rate = { log_uniform = [1e-5, 1e-1] }
"#,
    )
    .unwrap();
    let mut strata = [0u32; 16];
    for t in spec.trials() {
        let u = (t.learning_rate.log10() + 5.0) / 4.0;
        strata[((u * 16.0) as usize).min(15)] += 1;
    }
    assert_eq!(
        strata, [1; 16],
        "one point in each sixteenth of the log range"
    );
}

#[test]
fn width_and_depth_draw_networks_within_the_parameter_budget() {
    let spec = SweepSpec::parse(
        r#"
name = "capacity"
val_fraction = 0.2
[search]
method = "random"
points = 12
max_params = 1200
[search.space]
width = { int_log_uniform = [4, 64] }
depth = { int_uniform = [1, 3] }
"#,
    )
    .unwrap();
    let trials = spec.trials();
    assert_eq!(trials.len(), 12);
    let mut depths = std::collections::HashSet::new();
    for t in &trials {
        let hidden: Vec<&str> = t
            .model
            .name
            .strip_prefix("mlp:")
            .unwrap()
            .split(',')
            .collect();
        assert!((1..=3).contains(&hidden.len()), "{}", t.model);
        assert!(
            hidden.iter().all(|w| *w == hidden[0]),
            "{}: one width",
            t.model
        );
        assert!(
            t.model.param_count() <= 1200,
            "{} has {}",
            t.model,
            t.model.param_count()
        );
        depths.insert(hidden.len());
    }
    assert!(depths.len() > 1, "several depths drawn: {depths:?}");
}

#[test]
fn a_search_that_chooses_on_the_training_data_says_so() {
    use jetsweep_proto::dataset::ValidationKind::{HeldOut, TrainAsVal};
    let spec = SweepSpec::parse(&SEARCH.replace("val_fraction = 0.2\n", "")).unwrap();
    let warnings = spec.warnings(TrainAsVal);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("training data") && warnings[0].contains("val_fraction"),
        "{}",
        warnings[0]
    );
    assert!(
        SweepSpec::parse(SEARCH)
            .unwrap()
            .warnings(HeldOut)
            .is_empty()
    );
    // A dataset that brings its own validation split (an .npy directory with x_val.npy) needs no
    // val_fraction.
    assert!(spec.warnings(HeldOut).is_empty());
    assert!(
        SweepSpec::parse(LAB)
            .unwrap()
            .warnings(TrainAsVal)
            .is_empty(),
        "a grid chooses nothing"
    );
}

#[test]
fn each_stopping_rule_and_mode_is_read_from_the_file() {
    let with = |stop: &str| SEARCH.replace("[grid]", &format!("[search.stop]\n{stop}\n[grid]"));
    for (stop, rule, mode) in [
        (
            "rule = \"halving\"\nmin_epochs = 2\neta = 4",
            Rule::Halving,
            Mode::Sync,
        ),
        (
            "rule = \"halving\"\nmode = \"async\"\nmin_epochs = 2\neta = 4",
            Rule::Halving,
            Mode::Async,
        ),
        (
            "rule = \"median\"\nmin_epochs = 2\neta = 4",
            Rule::Median,
            Mode::Sync,
        ),
    ] {
        let spec = SweepSpec::parse(&with(stop)).unwrap();
        let s = &spec.search.stop;
        assert_eq!(
            (s.rule, s.mode, s.min_epochs, s.eta),
            (rule, mode, 2, 4),
            "{stop}"
        );
    }
    SweepSpec::parse(&with("rule = \"none\"")).expect("rule = none is every point to max_epochs");
}

#[test]
fn a_job_without_weight_decay_keeps_the_id_it_had_before_weight_decay_existed() {
    let t = SweepSpec::parse(LAB).unwrap().trials()[0].clone();
    let before = format!(
        "jetsweep-job-v1|model=jsc-tiny|optimizer=adam|batch_size=64|max_epochs=10|lr={:016x}|seed=0|dataset=d1",
        1e-3f64.to_bits()
    );
    let digest = Sha256::digest(before.as_bytes());
    let expected: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    assert_eq!(job_id(&t, "d1"), expected);
    let decayed = Trial {
        weight_decay: 1e-4,
        ..t.clone()
    };
    assert_ne!(job_id(&decayed, "d1"), expected);
}
