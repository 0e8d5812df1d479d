//! Each packed engine against the reference (autodiff) engine: each trial of a pack is the trial
//! trained alone, step by step.

use std::ops::ControlFlow;

use burn::backend::Flex;
use jetsweep_data::{Prepared, synthetic};
use jetsweep_proto::metrics::EpochMetrics;
use jetsweep_proto::trial::Hyperparameters;

use super::{
    DeviceData, PackOutcomes, Progress, RunOptions, Summary, packs, train_autodiff, train_pack_cpu,
    train_pack_tensors,
};
use crate::device::CpuBackend;
use crate::error::WorkerError;

/// The tensor engine on the CPU backend.
fn train_pack<B: burn::tensor::backend::Backend>(
    data: &Prepared,
    configs: &[Hyperparameters],
    device: &B::Device,
    options: &RunOptions,
    observe: &mut dyn FnMut(usize, Progress<'_>) -> ControlFlow<String>,
) -> PackOutcomes {
    let on_device = DeviceData::<B>::upload(data, device);
    train_pack_tensors::<B>(data, &on_device, configs, device, options, observe)
}

fn config(model: &str, batch_size: u32, max_epochs: u32, lr: f64, seed: u64) -> Hyperparameters {
    Hyperparameters {
        model: model.parse().unwrap(),
        batch_size,
        max_epochs,
        learning_rate: lr,
        seed,
        ..Default::default()
    }
}

/// What one trial reported: step losses, epochs, and how it ended.
#[derive(Debug)]
struct Trial {
    steps: Vec<f64>,
    epochs: Vec<EpochMetrics>,
    outcome: Result<Summary, String>,
}

/// The unpacked autodiff trainer, every step traced.
fn alone(data: &Prepared, cfg: &Hyperparameters) -> Trial {
    let (mut steps, mut epochs) = (Vec::new(), Vec::new());
    let options = RunOptions {
        trace_steps: usize::MAX,
        ..Default::default()
    };
    let outcome =
        train_autodiff::<CpuBackend>(data, cfg, &Default::default(), &options, &mut |p| {
            match p {
                Progress::Step { loss, .. } => steps.push(loss),
                Progress::Epoch(m) => epochs.push(m.clone()),
                _ => {}
            }
            ControlFlow::Continue(())
        });
    Trial {
        steps,
        epochs,
        outcome: outcome.map_err(|e| e.to_string()),
    }
}

/// The pack, every step of every trial traced, by both engines: the CPU loops (what a CPU worker
/// runs) and the tensor trainer (what a GPU worker runs; here on the CPU backend).
fn packed(
    data: &Prepared,
    cfgs: &[Hyperparameters],
    options: &RunOptions,
) -> [(&'static str, Vec<Trial>); 2] {
    [
        ("cpu loops", packed_with(data, cfgs, options, false, None)),
        ("tensors", packed_with(data, cfgs, options, true, None)),
    ]
}

/// The pack by the tensor engine (`tensors`) or by the CPU loops; `stop: Some((lane, epoch))`
/// stops that lane after that epoch's report, as a lost lease or an early-stopping decision does.
fn packed_with(
    data: &Prepared,
    cfgs: &[Hyperparameters],
    options: &RunOptions,
    tensors: bool,
    stop: Option<(usize, u32)>,
) -> Vec<Trial> {
    let mut trials: Vec<Trial> = cfgs
        .iter()
        .map(|_| Trial {
            steps: Vec::new(),
            epochs: Vec::new(),
            outcome: Err(String::new()),
        })
        .collect();
    let mut observe = |i: usize, p: Progress<'_>| {
        match p {
            Progress::Step { loss, .. } => trials[i].steps.push(loss),
            Progress::Epoch(m) => {
                trials[i].epochs.push(m.clone());
                if stop == Some((i, m.epoch)) {
                    return ControlFlow::Break("stopped early".into());
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    };
    let outcomes = if tensors {
        train_pack::<Flex>(data, cfgs, &Default::default(), options, &mut observe)
    } else {
        train_pack_cpu(data, cfgs, options, &mut observe)
    }
    .unwrap();
    for (t, o) in trials.iter_mut().zip(outcomes) {
        t.outcome = o.map_err(|e| e.to_string());
    }
    trials
}

fn traced() -> RunOptions {
    RunOptions {
        trace_steps: usize::MAX,
        ..Default::default()
    }
}

/// How closely a packed trial must follow the trial alone.
#[derive(Clone, Copy, PartialEq)]
enum Agreement {
    /// Step losses and every epoch's losses within 1e-5, accuracies and the result to four decimals.
    Exact,
    /// Models with a Linear layer before a BatchNorm (jsc-toy, jsc-s, mlp:…): the first epoch's step
    /// losses within 1e-2 (most within 1e-6; jsc-s has single steps off by 1e-3), the final test accuracy within 3 points (2.0 seen for jsc-s on an AMD EPYC, where the matrix kernels differ: a few test rows). That layer's bias has a gradient
    /// of exactly zero in arithmetic (BatchNorm removes it), so what any trainer computes for it is
    /// rounding noise of about 1e-9, which Adam (ε 1e-8) turns into steps of nearly the learning
    /// rate: the bias wanders, differently in each trainer (PyTorch's too), and drags the running
    /// mean used at evaluation, so the two runs drift apart as chaotic float runs do.
    Drifting,
}

/// `packed` agrees with `alone` as `agreement` says.
fn assert_same(what: &str, packed: &Trial, alone: &Trial, agreement: Agreement) {
    assert_eq!(packed.steps.len(), alone.steps.len(), "{what}: steps");
    assert_eq!(packed.epochs.len(), alone.epochs.len(), "{what}: epochs");
    let (p, a) = (
        packed.outcome.as_ref().unwrap(),
        alone.outcome.as_ref().unwrap(),
    );
    if agreement == Agreement::Drifting {
        let first_epoch = packed.steps.len() / packed.epochs.len();
        for (i, (p, a)) in packed
            .steps
            .iter()
            .zip(&alone.steps)
            .take(first_epoch)
            .enumerate()
        {
            assert!(
                (p - a).abs() < 1e-2,
                "{what}: step {i} loss {p} packed, {a} alone"
            );
        }
        assert!(
            (p.test_acc - a.test_acc).abs() < 0.03,
            "{what}: {p:?} vs {a:?}"
        );
        return;
    }
    for (i, (p, a)) in packed.steps.iter().zip(&alone.steps).enumerate() {
        assert!(
            (p - a).abs() < 1e-5,
            "{what}: step {i} loss {p} packed, {a} alone"
        );
    }
    for (p, a) in packed.epochs.iter().zip(&alone.epochs) {
        let at = |name: &str| format!("{what}: epoch {} {name}", p.epoch);
        assert_eq!(p.lr, a.lr, "{}", at("lr"));
        for (name, x, y) in [
            ("train loss", p.train_loss, a.train_loss),
            ("val loss", p.val_loss, a.val_loss),
            ("test loss", p.test_loss, a.test_loss),
        ] {
            assert!((x - y).abs() < 1e-5, "{}: {x} vs {y}", at(name));
        }
        for (name, x, y) in [
            ("train acc", p.train_acc, a.train_acc),
            ("val acc", p.val_acc, a.val_acc),
            ("test acc", p.test_acc, a.test_acc),
        ] {
            assert_eq!(format!("{x:.4}"), format!("{y:.4}"), "{}", at(name));
        }
    }
    assert_eq!(
        format!("{:.4}", p.test_acc),
        format!("{:.4}", a.test_acc),
        "{what}: test acc"
    );
    assert_eq!(
        format!("{:.4}", p.best_test_acc),
        format!("{:.4}", a.best_test_acc),
        "{what}: best test acc"
    );
    assert_eq!(
        (p.best_epoch, p.params, p.val),
        (a.best_epoch, a.params, a.val),
        "{what}"
    );
}

#[test]
/// Packs of 1, 3 and 5 trials with different seeds and learning rates, for jsc-tiny (every step's
/// loss, every epoch's numbers and the result are those of the trial trained alone by the autodiff
/// trainer) and jsc-toy (hidden BatchNorms: see [`Agreement::Drifting`]).
fn each_trial_of_a_pack_is_the_trial_trained_alone() {
    let data = synthetic::prepared(3_000, &Default::default()).unwrap();
    let lrs = [1e-3, 1e-2, 3e-4, 5e-3, 1e-5];
    for (model, agreement) in [
        ("jsc-tiny", Agreement::Exact),
        ("jsc-toy", Agreement::Drifting),
    ] {
        for k in [1usize, 3, 5] {
            let cfgs: Vec<Hyperparameters> = (0..k)
                .map(|i| config(model, 100, 3, lrs[i], 10 + i as u64))
                .collect();
            let alone: Vec<Trial> = cfgs.iter().map(|c| alone(&data, c)).collect();
            for (engine, trials) in packed(&data, &cfgs, &traced()) {
                assert_eq!(
                    trials[0].steps.len(),
                    3 * 24,
                    "2,400 rows in batches of 100, 3 epochs"
                );
                for ((cfg, trial), alone) in cfgs.iter().zip(&trials).zip(&alone) {
                    let what = format!(
                        "{engine}: {model} K={k} lr {} seed {}",
                        cfg.learning_rate, cfg.seed
                    );
                    assert_same(&what, trial, alone, agreement);
                }
            }
        }
    }
}

#[test]
/// Weight decay, each lane its own (0, 1e-2 and 0.1 in one pack): every lane matches burn's Adam
/// with its `WeightDecayConfig` (PyTorch's `p · wd + g`) trained alone, and decay changes the
/// numbers (a decaying lane is not the undecayed one).
fn each_lane_decays_its_weights_as_adam_with_weight_decay_does_alone() {
    let data = synthetic::prepared(2_000, &Default::default()).unwrap();
    for (model, agreement) in [
        ("jsc-tiny", Agreement::Exact),
        ("jsc-toy", Agreement::Drifting),
    ] {
        let cfgs: Vec<Hyperparameters> = [0.0, 1e-2, 0.1]
            .iter()
            .map(|&weight_decay| Hyperparameters {
                weight_decay,
                ..config(model, 100, 2, 1e-2, 4)
            })
            .collect();
        let alone: Vec<Trial> = cfgs.iter().map(|c| alone(&data, c)).collect();
        for (engine, trials) in packed(&data, &cfgs, &traced()) {
            for ((cfg, trial), alone) in cfgs.iter().zip(&trials).zip(&alone) {
                let what = format!("{engine}: {model} weight decay {}", cfg.weight_decay);
                assert_same(&what, trial, alone, agreement);
            }
            let last = |t: &Trial| t.steps.last().copied().unwrap();
            assert!(
                (last(&trials[2]) - last(&trials[0])).abs() > 1e-4,
                "{engine}: {model}: a weight decay of 0.1 changes the loss ({} vs {})",
                last(&trials[2]),
                last(&trials[0])
            );
        }
    }
}

#[test]
/// A held-out validation split, a last partial batch, and deeper models (jsc-tiny exact; mlp:32,16
/// and jsc-s have hidden BatchNorms).
fn packs_match_with_held_out_validation_and_a_partial_last_batch() {
    let options = jetsweep_data::preprocess::PrepareOptions {
        val_fraction: 0.25,
        ..Default::default()
    };
    let data = synthetic::prepared(2_000, &options).unwrap();
    for (model, agreement) in [
        ("jsc-tiny", Agreement::Exact),
        ("mlp:32,16", Agreement::Drifting),
        ("jsc-s", Agreement::Drifting),
    ] {
        let cfgs = vec![config(model, 96, 2, 2e-3, 1), config(model, 96, 2, 7e-4, 2)];
        for (engine, trials) in packed(&data, &cfgs, &traced()) {
            for (cfg, trial) in cfgs.iter().zip(&trials) {
                let what = format!("{engine}: {model} lr {}", cfg.learning_rate);
                assert_same(&what, trial, &alone(&data, cfg), agreement);
            }
        }
    }
}

#[test]
/// A learning rate so large that the weights overflow makes that trial's numbers NaN: it is
/// reported diverged, and its pack-mates end exactly as they would alone.
fn a_diverging_trial_ends_alone_and_the_rest_go_on() {
    let data = synthetic::prepared(2_000, &Default::default()).unwrap();
    let cfgs = vec![
        config("jsc-tiny", 64, 3, 1e-3, 1),
        config("jsc-tiny", 64, 3, 1e38, 2),
        config("jsc-tiny", 64, 3, 1e-2, 3),
    ];
    assert!(matches!(
        alone(&data, &cfgs[1]).outcome,
        Err(e) if e.contains("diverged")
    ));
    for (engine, trials) in packed(&data, &cfgs, &traced()) {
        let diverged = trials[1].outcome.as_ref().unwrap_err();
        assert!(diverged.contains("diverged"), "{engine}: {diverged}");
        assert!(
            trials[1].epochs.is_empty(),
            "{engine}: no epoch of NaNs is reported"
        );
        for i in [0, 2] {
            let what = format!("{engine}: trial {i}");
            assert_same(&what, &trials[i], &alone(&data, &cfgs[i]), Agreement::Exact);
        }
    }
}

#[test]
/// Stopping lane k of a pack after epoch e (its lease went stale, or a search stopped it early)
/// ends that lane there, and its pack-mates end exactly as each would alone, in both engines.
fn stopping_lane_k_after_epoch_e_leaves_its_pack_mates_as_alone() {
    let data = synthetic::prepared(1_500, &Default::default()).unwrap();
    let cfgs = vec![
        config("jsc-tiny", 50, 4, 1e-3, 1),
        config("jsc-tiny", 50, 4, 3e-3, 2),
        config("jsc-tiny", 50, 4, 1e-2, 3),
    ];
    for (lane, epoch) in [(0, 1), (1, 2), (2, 3)] {
        for (engine, tensors) in [("cpu loops", false), ("tensors", true)] {
            let trials = packed_with(&data, &cfgs, &traced(), tensors, Some((lane, epoch)));
            let what = format!("{engine}: lane {lane} stopped after epoch {epoch}");
            assert_eq!(
                trials[lane].outcome.as_ref().unwrap_err(),
                "training stopped: stopped early",
                "{what}"
            );
            assert_eq!(
                trials[lane]
                    .epochs
                    .iter()
                    .map(|m| m.epoch)
                    .collect::<Vec<_>>(),
                (1..=epoch).collect::<Vec<_>>(),
                "{what}: its epochs"
            );
            for mate in (0..cfgs.len()).filter(|&m| m != lane) {
                let alone = alone(&data, &cfgs[mate]);
                assert_same(
                    &format!("{what}, mate {mate}"),
                    &trials[mate],
                    &alone,
                    Agreement::Exact,
                );
            }
        }
    }
}

#[test]
/// Trials stopped after an epoch and resumed from the packed trainer's state end as the unstopped
/// run; the state is the unpacked trainer's format, so either trainer resumes from the other's.
fn packed_state_resumes_in_either_trainer() {
    let data = synthetic::prepared(1_500, &Default::default()).unwrap();
    let cfgs = vec![
        config("jsc-toy", 64, 4, 1e-3, 5),
        config("jsc-toy", 64, 4, 3e-3, 6),
    ];
    let mut states: Vec<Vec<(u32, Vec<u8>)>> = vec![Vec::new(); 2];
    let options = RunOptions {
        checkpoints: true,
        ..Default::default()
    };
    let mut last_test_loss = [f64::NAN; 2];
    let full = train_pack::<Flex>(&data, &cfgs, &Default::default(), &options, &mut |i, p| {
        match p {
            Progress::Checkpoint { epoch, state } => states[i].push((epoch, state)),
            Progress::Epoch(m) => last_test_loss[i] = m.test_loss,
            _ => {}
        }
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(states[1].iter().map(|s| s.0).collect::<Vec<_>>(), [1, 2, 3]);
    for (i, cfg) in cfgs.iter().enumerate() {
        let whole = full[i].as_ref().unwrap();
        let state = states[i][1].1.clone();
        let resumed = train_pack::<Flex>(
            &data,
            std::slice::from_ref(cfg),
            &Default::default(),
            &RunOptions {
                resume: Some(state.clone()),
                ..Default::default()
            },
            &mut |_, _| ControlFlow::Continue(()),
        )
        .unwrap()
        .remove(0)
        .unwrap();
        assert_eq!(
            format!("{:.6}", resumed.test_acc),
            format!("{:.6}", whole.test_acc)
        );
        // The autodiff trainer takes the state too and ends near where the pack did: its rounding
        // differs (1e-7 a step), which two epochs at these learning rates grow to ~2e-4 in loss.
        let mut last_loss = f64::NAN;
        train_autodiff::<CpuBackend>(
            &data,
            cfg,
            &Default::default(),
            &RunOptions {
                resume: Some(state),
                ..Default::default()
            },
            &mut |p| {
                if let Progress::Epoch(m) = p {
                    last_loss = m.test_loss;
                }
                ControlFlow::Continue(())
            },
        )
        .unwrap();
        assert!(
            (last_loss - last_test_loss[i]).abs() < 1e-3,
            "{last_loss} vs {}",
            last_test_loss[i]
        );
    }
    let refused = train_pack::<Flex>(
        &data,
        &cfgs,
        &Default::default(),
        &RunOptions {
            resume: Some(states[0][0].1.clone()),
            ..Default::default()
        },
        &mut |_, _| ControlFlow::Continue(()),
    );
    assert!(refused.is_err(), "a pack of two cannot resume one state");
}

#[test]
fn trials_are_grouped_into_packs_that_can_train_together() {
    let cfgs = vec![
        config("jsc-tiny", 64, 5, 1e-3, 0),
        config("jsc-tiny", 128, 5, 1e-3, 0),
        config("jsc-tiny", 64, 5, 1e-2, 1),
        config("jsc-toy", 64, 5, 1e-3, 0),
        config("jsc-tiny", 64, 5, 1e-4, 2),
        config("jsc-tiny", 64, 6, 1e-3, 0),
    ];
    assert_eq!(
        packs(&cfgs, 2),
        vec![vec![0, 2], vec![1], vec![3], vec![4], vec![5]]
    );
    assert_eq!(
        packs(&cfgs, 16),
        vec![vec![0, 2, 4], vec![1], vec![3], vec![5]]
    );
    assert_eq!(packs(&cfgs, 1).len(), 6);
    let mixed = train_pack::<Flex>(
        &synthetic::prepared(500, &Default::default()).unwrap(),
        &cfgs[..2],
        &Default::default(),
        &Default::default(),
        &mut |_, _| ControlFlow::Continue(()),
    );
    assert!(
        matches!(mixed, Err(WorkerError::Invalid(m)) if m.contains("cannot train in one pack"))
    );
}
