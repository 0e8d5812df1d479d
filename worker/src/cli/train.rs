//! `jetsweep-worker train`: one standalone training run, a line (or JSON object) per epoch.

use std::ops::ControlFlow;
use std::path::PathBuf;

use clap::Args;
use jetsweep_data::{batch, npy};
use serde_json::json;

use jetsweep_proto::trial::{self, Hyperparameters, MAX_BATCH_SIZE, MAX_EPOCHS};

use super::dataset_args::{DatasetArgs, describe};
use crate::device::{self, DeviceChoice};
use crate::model::Architecture;
use crate::train::{Progress, RunOptions};

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Model: jsc-tiny, jsc-toy, jsc-s, jsc-tiny-x10, or mlp:W1,W2,... (hidden widths).
    #[arg(long, default_value = "jsc-tiny", value_parser = parse_model)]
    pub model: Architecture,

    #[command(flatten)]
    pub data: DatasetArgs,

    /// Rows per optimizer step (the last batch of an epoch may be smaller).
    #[arg(long, default_value_t = trial::DEFAULT_BATCH_SIZE, value_parser = clap::value_parser!(u32).range(1..=MAX_BATCH_SIZE as i64))]
    pub batch_size: u32,

    /// Passes over the training data; also the cosine schedule's T_max.
    #[arg(long, default_value_t = trial::DEFAULT_MAX_EPOCHS, value_parser = clap::value_parser!(u32).range(1..=MAX_EPOCHS as i64))]
    pub max_epochs: u32,

    /// Initial learning rate of Adam (decays by cosine to 1e-6 over the run). MASE's default is 1e-5.
    #[arg(long, default_value_t = trial::DEFAULT_LEARNING_RATE, value_parser = parse_lr, allow_hyphen_values = true)]
    pub lr: f64,

    /// Seed of the initial weights and of the per-epoch shuffles.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,

    /// Device: cpu, or cuda:N (needs a build with `--features cuda` and an NVIDIA driver).
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    pub device: DeviceChoice,

    /// Print one JSON object per epoch and a final one, instead of readable lines.
    #[arg(long)]
    pub json: bool,

    /// Also print the loss of the first K optimizer steps (for step-by-step comparison).
    #[arg(long, default_value_t = 0, value_name = "K")]
    pub trace_steps: usize,

    /// Write the initial weights (jsc-tiny only) as JSON in the reference trainer's names and layout.
    #[arg(long, value_name = "FILE")]
    pub dump_init: Option<PathBuf>,

    /// Write every epoch's row order as an int64 .npy array [max_epochs, train rows].
    #[arg(long, value_name = "FILE")]
    pub dump_order: Option<PathBuf>,
}

fn parse_model(s: &str) -> Result<Architecture, String> {
    s.parse().map_err(|e: jetsweep_proto::Error| e.to_string())
}

fn parse_device(s: &str) -> Result<DeviceChoice, String> {
    s.parse().map_err(|e: crate::WorkerError| e.to_string())
}

/// A learning rate, checked by the shared rule; the message quotes the value as it was typed.
fn parse_lr(s: &str) -> Result<f64, String> {
    let lr = s.parse::<f64>().unwrap_or(f64::NAN);
    trial::check_learning_rate(lr).map_err(|e| match e {
        jetsweep_proto::Error::Invalid { hint, .. } => format!("learning rate {s}: {hint}"),
        other => other.to_string(),
    })?;
    Ok(lr)
}

pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    let config = Hyperparameters {
        model: args.model.clone(),
        batch_size: args.batch_size,
        max_epochs: args.max_epochs,
        learning_rate: args.lr,
        seed: args.seed,
        ..Default::default()
    };
    config.validate()?;
    device::check(args.device)?;
    let data = args.data.load()?;
    eprintln!("{}", describe(&data));
    if !args.json {
        println!(
            "training {} ({} params) on {} — batch {}, {} epochs, lr {:e}, seed {}",
            config.model,
            config.model.param_count(),
            args.device,
            config.batch_size,
            config.max_epochs,
            config.learning_rate,
            config.seed
        );
    }
    if let Some(path) = &args.dump_init {
        let model = crate::model::init::<burn::backend::Flex>(
            &config.model,
            config.seed,
            &Default::default(),
        );
        let arrays = crate::model::export_jsc_tiny(&model)?;
        let object: serde_json::Map<String, serde_json::Value> = arrays
            .into_iter()
            .map(|(name, shape, values)| (name, json!({"shape": shape, "values": values})))
            .collect();
        std::fs::write(path, serde_json::to_vec(&object)?)?;
    }
    if let Some(path) = &args.dump_order {
        let n = data.train.len();
        let epochs = config.max_epochs as usize;
        let mut all = Vec::with_capacity(n * epochs);
        for epoch in 0..epochs {
            all.extend(
                batch::epoch_order(n, config.seed, epoch)
                    .into_iter()
                    .map(i64::from),
            );
        }
        npy::write_i64(path, &[epochs, n], &all)?;
    }

    let json_mode = args.json;
    let val_kind = data.validation().1;
    let mut observe = |p: Progress<'_>| {
        match p {
            Progress::Step { step, loss } => {
                if json_mode {
                    println!("{}", json!({"step": step, "loss": loss}));
                } else {
                    println!("step {step:>6}  loss {loss:.6}");
                }
            }
            Progress::Epoch(m) => {
                if json_mode {
                    let mut line = serde_json::to_value(m).expect("metrics serialise");
                    line["val"] = json!(val_kind);
                    println!("{line}");
                } else {
                    println!(
                        "epoch {:>3}/{}  lr {:.3e}  train loss {:.4} acc {:.4} | val ({}) loss {:.4} acc {:.4} | test loss {:.4} acc {:.4} | {:.2} s, {:.0} samples/s",
                        m.epoch,
                        config.max_epochs,
                        m.lr,
                        m.train_loss,
                        m.train_acc,
                        val_kind.as_str(),
                        m.val_loss,
                        m.val_acc,
                        m.test_loss,
                        m.test_acc,
                        m.seconds,
                        m.samples_per_second
                    );
                }
            }
            // Neither is asked for here: no resume state, no checkpoints.
            Progress::Resumed(_) | Progress::Checkpoint { .. } => {}
        }
        ControlFlow::Continue(())
    };
    let options = RunOptions {
        trace_steps: args.trace_steps,
        ..Default::default()
    };
    let summary = device::train_on(args.device, &data, &config, &options, &mut observe)?;
    if json_mode {
        println!(
            "{}",
            json!({
                "final": true,
                "model": config.model.name,
                "params": summary.params,
                "test_acc": summary.test_acc,
                "best_epoch": summary.best_epoch,
                "best_test_acc": summary.best_test_acc,
                "val": summary.val,
                "batch_size": config.batch_size,
                "max_epochs": config.max_epochs,
                "lr": config.learning_rate,
                "seed": config.seed,
                "device": args.device.to_string(),
                "dataset": data.provenance.source,
                "synthetic": data.provenance.synthetic,
                "dataset_sha256": data.provenance.sha256,
            })
        );
    } else {
        println!(
            "final: test acc {:.4} (last epoch); best val loss at epoch {} ({}) → test acc {:.4}{}",
            summary.test_acc,
            summary.best_epoch,
            summary.val.as_str(),
            summary.best_test_acc,
            if data.provenance.synthetic {
                "  [synthetic data]"
            } else {
                ""
            }
        );
    }
    Ok(())
}
