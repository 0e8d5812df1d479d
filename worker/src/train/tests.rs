//! The epoch loop against its recipe, run by the reference engine: schedule, determinism,
//! validation kind, best epoch, stopping, resuming.

use std::ops::ControlFlow;

use super::recipe::cosine_lr;
use super::*;
use crate::device::CpuBackend;
use jetsweep_data::synthetic;

fn config(
    model: &str,
    batch_size: u32,
    max_epochs: u32,
    learning_rate: f64,
    seed: u64,
) -> Hyperparameters {
    Hyperparameters {
        model: model.parse().unwrap(),
        batch_size,
        max_epochs,
        learning_rate,
        seed,
        ..Default::default()
    }
}

/// A run's summary, epochs, step losses, checkpoints (epoch, state) and what it said about resuming.
struct Observed {
    summary: Summary,
    epochs: Vec<EpochMetrics>,
    steps: Vec<f64>,
    states: Vec<(u32, Vec<u8>)>,
    resumed: Option<String>,
}

/// Runs `cfg` with `options`, collecting everything it reports.
fn observe(data: &Prepared, cfg: &Hyperparameters, options: &RunOptions) -> Observed {
    let (mut epochs, mut steps, mut states, mut resumed) =
        (Vec::new(), Vec::new(), Vec::new(), None);
    let summary = train_autodiff::<CpuBackend>(data, cfg, &Default::default(), options, &mut |p| {
        match p {
            Progress::Step { loss, .. } => steps.push(loss),
            Progress::Epoch(m) => epochs.push(m.clone()),
            Progress::Checkpoint { epoch, state } => states.push((epoch, state)),
            Progress::Resumed(r) => {
                resumed = Some(r.map(|e| e.to_string()).unwrap_or_else(|e| e.to_string()))
            }
        }
        ControlFlow::Continue(())
    })
    .unwrap();
    Observed {
        summary,
        epochs,
        steps,
        states,
        resumed,
    }
}

/// A plain run, the first `trace` step losses traced: summary, epochs, step losses.
fn run(
    data: &Prepared,
    cfg: &Hyperparameters,
    trace: usize,
) -> (Summary, Vec<EpochMetrics>, Vec<f64>) {
    let options = RunOptions {
        trace_steps: trace,
        ..Default::default()
    };
    let o = observe(data, cfg, &options);
    (o.summary, o.epochs, o.steps)
}

#[test]
fn cosine_schedule_matches_pytorch() {
    // torch CosineAnnealingLR(T_max=10, eta_min=1e-6) from lr 1e-3: epochs 0, 5, 9.
    assert!((cosine_lr(1e-3, 0, 10) - 1e-3).abs() < 1e-12);
    assert!((cosine_lr(1e-3, 5, 10) - 5.005e-4).abs() < 1e-12);
    assert!((cosine_lr(1e-3, 9, 10) - 2.5447270110570814e-5).abs() < 1e-12);
}

#[test]
fn a_few_steps_lower_the_loss() {
    let data = synthetic::prepared(4_000, &Default::default()).unwrap();
    let (_, _, losses) = run(&data, &config("jsc-toy", 64, 1, 1e-2, 3), 50);
    assert_eq!(losses.len(), 50);
    let first: f64 = losses[..5].iter().sum::<f64>() / 5.0;
    let last: f64 = losses[45..].iter().sum::<f64>() / 5.0;
    assert!(last < first - 0.1, "loss went from {first:.3} to {last:.3}");
}

#[test]
fn same_seed_gives_identical_metrics_and_another_seed_does_not() {
    let data = synthetic::prepared(3_000, &Default::default()).unwrap();
    let strip = |ms: Vec<EpochMetrics>| -> Vec<[f64; 6]> {
        ms.into_iter()
            .map(|m| {
                [
                    m.train_loss,
                    m.train_acc,
                    m.val_loss,
                    m.val_acc,
                    m.test_loss,
                    m.test_acc,
                ]
            })
            .collect()
    };
    let (s1, a, _) = run(&data, &config("jsc-tiny", 100, 3, 1e-3, 7), 0);
    let (s2, b, _) = run(&data, &config("jsc-tiny", 100, 3, 1e-3, 7), 0);
    let (_, c, _) = run(&data, &config("jsc-tiny", 100, 3, 1e-3, 8), 0);
    assert_eq!(s1, s2);
    let (a, b, c) = (strip(a), strip(b), strip(c));
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn epochs_report_schedule_validation_kind_and_best_epoch() {
    let data = synthetic::prepared(
        2_000,
        &jetsweep_data::preprocess::PrepareOptions {
            val_fraction: 0.2,
            ..Default::default()
        },
    )
    .unwrap();
    let (summary, epochs, _) = run(&data, &config("jsc-tiny", 128, 4, 1e-2, 0), 0);
    assert_eq!(epochs.len(), 4);
    assert_eq!(epochs[0].lr, 1e-2);
    assert!(epochs.windows(2).all(|w| w[1].lr < w[0].lr));
    assert_eq!(summary.val, ValidationKind::HeldOut);
    assert!(epochs.iter().all(|m| (0.0..=1.0).contains(&m.test_acc)));
    let best = epochs
        .iter()
        .min_by(|a, b| a.val_loss.total_cmp(&b.val_loss))
        .unwrap();
    assert_eq!(
        (summary.best_epoch, summary.best_test_acc),
        (best.epoch, best.test_acc)
    );
    assert_eq!(summary.test_acc, epochs[3].test_acc);
    assert_eq!(summary.params, 117);
}

#[test]
fn the_observer_can_stop_a_run() {
    let data = synthetic::prepared(1_000, &Default::default()).unwrap();
    let err = train_autodiff::<CpuBackend>(
        &data,
        &config("jsc-tiny", 128, 5, 1e-3, 0),
        &Default::default(),
        &RunOptions::default(),
        &mut |p| match p {
            Progress::Epoch(m) if m.epoch == 2 => ControlFlow::Break("cancelled".into()),
            _ => ControlFlow::Continue(()),
        },
    )
    .unwrap_err();
    assert!(
        matches!(err, WorkerError::Stopped(ref r) if r == "cancelled"),
        "{err}"
    );
}

#[test]
fn impossible_hyperparameters_are_refused() {
    let data = synthetic::prepared(500, &Default::default()).unwrap();
    for (cfg, needle) in [
        (config("jsc-tiny", 0, 1, 1e-3, 0), "batch_size = 0"),
        (config("jsc-tiny", 8, 1, 0.0, 0), "learning_rate = 0"),
        (config("jsc-tiny", 8, 1, f64::NAN, 0), "learning_rate = NaN"),
        (config("jsc-tiny", 8, 0, 1e-3, 0), "max_epochs = 0"),
    ] {
        let err = train_autodiff::<CpuBackend>(
            &data,
            &cfg,
            &Default::default(),
            &RunOptions::default(),
            &mut |_| ControlFlow::Continue(()),
        )
        .expect_err("refused")
        .to_string();
        assert!(err.contains(needle), "{err}");
    }
}

#[test]
fn a_trial_resumed_from_any_epoch_ends_exactly_as_an_uninterrupted_one() {
    let data = synthetic::prepared(3_000, &Default::default()).unwrap();
    for model in ["jsc-tiny", "jsc-toy"] {
        let cfg = config(model, 64, 5, 5e-3, 7);
        let checkpoints = RunOptions {
            checkpoints: true,
            ..Default::default()
        };
        let Observed {
            summary: whole,
            epochs: whole_epochs,
            states,
            ..
        } = observe(&data, &cfg, &checkpoints);
        // One state after every epoch but the last; a few KB for these models.
        assert_eq!(
            states.iter().map(|s| s.0).collect::<Vec<_>>(),
            vec![1, 2, 3, 4]
        );
        assert!(states.iter().all(|(_, s)| s.len() < 8_192), "{model}");
        // The weights of the best and the last epoch come with the summary.
        let (best, last) = (
            whole.weights.best.as_ref().expect("best weights"),
            whole.weights.last.as_ref().expect("last weights"),
        );
        assert_eq!((best.epoch, last.epoch), (whole.best_epoch, 5), "{model}");
        assert_eq!(best.model, model);
        let arch: jetsweep_proto::model::Architecture = model.parse().unwrap();
        best.check(&arch).unwrap();
        for (epoch, state) in &states {
            // Resumed, it ends with the same numbers and the same kept weights (a best epoch
            // before the resume point travels in the state).
            let resumed = RunOptions {
                resume: Some(state.clone()),
                checkpoints: true,
                ..Default::default()
            };
            let Observed {
                summary,
                epochs,
                resumed: said,
                ..
            } = observe(&data, &cfg, &resumed);
            assert_eq!(said.as_deref(), Some(&*epoch.to_string()), "{model}");
            assert_eq!(summary, whole, "{model} resumed after epoch {epoch}");
            let tail: Vec<_> = whole_epochs[*epoch as usize..]
                .iter()
                .map(EpochMetrics::training_numbers)
                .collect();
            assert_eq!(
                epochs
                    .iter()
                    .map(EpochMetrics::training_numbers)
                    .collect::<Vec<_>>(),
                tail,
                "{model} resumed after epoch {epoch}"
            );
        }
    }
}

#[test]
fn state_that_does_not_fit_the_trial_is_refused_and_the_run_starts_over() {
    let data = synthetic::prepared(1_000, &Default::default()).unwrap();
    let tiny = config("jsc-tiny", 128, 3, 1e-3, 0);
    let checkpoints = RunOptions {
        checkpoints: true,
        ..Default::default()
    };
    let Observed {
        summary: whole,
        states,
        ..
    } = observe(&data, &tiny, &checkpoints);
    let good = states[0].1.clone();
    let mut flipped_magic = good.clone();
    flipped_magic[0] ^= 1;
    let mut past_the_end = good.clone();
    past_the_end[6..10].copy_from_slice(&3u32.to_le_bytes());
    let cases: Vec<(Hyperparameters, Vec<u8>, &str)> = vec![
        (tiny.clone(), good[..20].to_vec(), "ends early"),
        (tiny.clone(), good[..good.len() - 3].to_vec(), "it claims"),
        (tiny.clone(), [good.clone(), vec![0]].concat(), "left over"),
        (tiny.clone(), flipped_magic, "not a jetsweep checkpoint"),
        (tiny.clone(), past_the_end, "after epoch 3"),
        (tiny.clone(), vec![0xff; 4], "not a jetsweep checkpoint"),
        // jsc-toy's state into jsc-tiny: the shapes differ.
        (
            config("jsc-toy", 128, 3, 1e-3, 0),
            good.clone(),
            "do not fit",
        ),
    ];
    for (cfg, state, needle) in cases {
        let options = RunOptions {
            resume: Some(state),
            ..Default::default()
        };
        let Observed {
            summary,
            epochs,
            resumed,
            ..
        } = observe(&data, &cfg, &options);
        let said = resumed.expect("the resume is reported");
        assert!(said.contains(needle), "{said:?} lacks {needle:?}");
        assert_eq!(epochs.len(), 3, "it starts over");
        if cfg == tiny {
            // The same training; weights are kept only with checkpoints, which this run had not.
            let unkept = crate::train::Summary {
                weights: Default::default(),
                ..whole.clone()
            };
            assert_eq!(summary, unkept);
        }
    }
}
