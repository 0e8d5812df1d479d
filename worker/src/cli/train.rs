//! `jetsweep-worker train`: standalone training, a line (or JSON object) per epoch. Lists of seeds
//! and learning rates train their cross product, packed (`--pack`).

use std::ops::ControlFlow;
use std::path::PathBuf;

use clap::Args;
use jetsweep_data::{batch, npy};
use serde_json::json;

use jetsweep_proto::trial::{self, Hyperparameters, MAX_BATCH_SIZE, MAX_EPOCHS};

use super::dataset_args::{DatasetArgs, describe};
use crate::device::{self, DeviceChoice};
use crate::model::Architecture;
use crate::train::{Progress, RunOptions, packs};

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
    /// A comma-separated list trains one trial per rate (times every seed).
    #[arg(long, default_value = "1e-5", value_parser = parse_lr, value_delimiter = ',', allow_hyphen_values = true)]
    pub lr: Vec<f64>,

    /// Weight decay of every trial: PyTorch Adam's `weight_decay`, `wd · p` added to each
    /// gradient. MASE's default is 0 (none).
    #[arg(long, default_value_t = trial::DEFAULT_WEIGHT_DECAY, value_parser = parse_weight_decay)]
    pub weight_decay: f64,

    /// Seed of the initial weights and of the per-epoch shuffles. A list (`0,1,2`) or a range
    /// (`0-15`, inclusive) trains one trial per seed (times every learning rate).
    #[arg(long, default_value = "0", value_parser = parse_seeds)]
    pub seed: Seeds,

    /// Most trials trained together as one pack (1: one at a time). Default: 16 on a CPU, 512 on
    /// a GPU.
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u32).range(1..=jetsweep_proto::limits::MAX_PACK as i64))]
    pub pack: Option<u32>,

    /// Train with burn's autodiff and optimizer, one trial at a time: the reference trainer the
    /// packed one is tested against (slower).
    #[arg(long)]
    pub autodiff: bool,

    /// Device: cpu, or cuda:N (needs a build with `--features cuda` and an NVIDIA driver).
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    pub device: DeviceChoice,

    /// Print one JSON object per epoch and a final one, instead of readable lines.
    #[arg(long)]
    pub json: bool,

    /// Also print the loss of the first K optimizer steps (for step-by-step comparison).
    #[arg(long, default_value_t = 0, value_name = "K")]
    pub trace_steps: usize,

    /// Write the initial weights (jsc-tiny only; of the first seed) as JSON in the reference trainer's names and layout.
    #[arg(long, value_name = "FILE")]
    pub dump_init: Option<PathBuf>,

    /// Write every epoch's row order (of the first seed) as an int64 .npy array [max_epochs, train rows].
    #[arg(long, value_name = "FILE")]
    pub dump_order: Option<PathBuf>,
}

fn parse_model(s: &str) -> Result<Architecture, String> {
    s.parse().map_err(|e: jetsweep_proto::Error| e.to_string())
}

fn parse_device(s: &str) -> Result<DeviceChoice, String> {
    s.parse().map_err(|e: crate::WorkerError| e.to_string())
}

/// Seeds given as a list and ranges: `3`, `0,1,2`, `0-15`, `0-3,10`.
#[derive(Debug, Clone)]
pub struct Seeds(pub Vec<u64>);

/// Most trials one command line may ask for.
const MAX_TRIALS: usize = 100_000;

fn parse_seeds(s: &str) -> Result<Seeds, String> {
    let mut seeds = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        let number = |v: &str| {
            v.trim()
                .parse::<u64>()
                .map_err(|_| format!("seed {v:?} is not a whole number (use e.g. 0,1,2 or 0-15)"))
        };
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (number(a)?, number(b)?),
            None => (number(part)?, number(part)?),
        };
        if last < first || (last - first) as usize >= MAX_TRIALS - seeds.len().min(MAX_TRIALS) {
            return Err(format!(
                "seed range {part:?} is empty or longer than {MAX_TRIALS} seeds"
            ));
        }
        seeds.extend(first..=last);
    }
    Ok(Seeds(seeds))
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

/// A weight decay, checked by the shared rule; the message quotes the value as it was typed.
fn parse_weight_decay(s: &str) -> Result<f64, String> {
    let wd = s.parse::<f64>().unwrap_or(f64::NAN);
    trial::check_weight_decay(wd).map_err(|e| match e {
        jetsweep_proto::Error::Invalid { hint, .. } => format!("weight decay {s}: {hint}"),
        other => other.to_string(),
    })?;
    Ok(wd)
}

pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    let configs: Vec<Hyperparameters> = args
        .seed
        .0
        .iter()
        .flat_map(|&seed| {
            args.lr
                .iter()
                .map(move |&learning_rate| (seed, learning_rate))
        })
        .map(|(seed, learning_rate)| Hyperparameters {
            model: args.model.clone(),
            batch_size: args.batch_size,
            max_epochs: args.max_epochs,
            learning_rate,
            seed,
            weight_decay: args.weight_decay,
            ..Default::default()
        })
        .collect();
    if configs.len() > MAX_TRIALS {
        anyhow::bail!(
            "{} seeds × {} learning rates is {} trials; at most {MAX_TRIALS} per command",
            args.seed.0.len(),
            args.lr.len(),
            configs.len()
        );
    }
    for c in &configs {
        c.validate()?;
    }
    device::check(args.device)?;
    let data = args.data.load()?;
    eprintln!("{}", describe(&data));
    let first = &configs[0];
    let pack = if args.autodiff {
        1
    } else {
        args.pack
            .map_or_else(|| device::default_pack(args.device), |k| k as usize)
    };
    let groups = packs(&configs, pack);
    if !args.json {
        println!(
            "training {} ({} params) on {} — batch {}, {} epochs; {} trial(s) (seeds × lr) in {} pack(s) of at most {pack}{}",
            first.model,
            first.model.param_count(),
            args.device,
            first.batch_size,
            first.max_epochs,
            configs.len(),
            groups.len(),
            if args.autodiff {
                ", autodiff trainer"
            } else {
                ""
            }
        );
    }
    if let Some(path) = &args.dump_init {
        let model = crate::model::init::<burn::backend::Flex>(
            &first.model,
            first.seed,
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
        let epochs = first.max_epochs as usize;
        let mut all = Vec::with_capacity(n * epochs);
        for epoch in 0..epochs {
            all.extend(
                batch::epoch_order(n, first.seed, epoch)
                    .into_iter()
                    .map(i64::from),
            );
        }
        npy::write_i64(path, &[epochs, n], &all)?;
    }

    let json_mode = args.json;
    let several = configs.len() > 1;
    let val_kind = data.validation().1;
    let options = RunOptions {
        trace_steps: args.trace_steps,
        ..Default::default()
    };
    let mut failed = 0;
    for group in groups {
        let pack: Vec<Hyperparameters> = group.iter().map(|&i| configs[i].clone()).collect();
        let mut observe = |trial: usize, p: Progress<'_>| {
            let c = &pack[trial];
            let tag = if several {
                format!("[seed {} lr {:e}] ", c.seed, c.learning_rate)
            } else {
                String::new()
            };
            match p {
                Progress::Step { step, loss } => {
                    if json_mode {
                        println!(
                            "{}",
                            json!({"seed": c.seed, "lr": c.learning_rate, "step": step, "loss": loss})
                        );
                    } else {
                        println!("{tag}step {step:>6}  loss {loss:.6}");
                    }
                }
                Progress::Epoch(m) => {
                    if json_mode {
                        let mut line = serde_json::to_value(m).expect("metrics serialise");
                        line["val"] = json!(val_kind);
                        line["seed"] = json!(c.seed);
                        line["base_lr"] = json!(c.learning_rate);
                        println!("{line}");
                    } else {
                        println!(
                            "{tag}epoch {:>3}/{}  lr {:.3e}  train loss {:.4} acc {:.4} | val ({}) loss {:.4} acc {:.4} | test loss {:.4} acc {:.4} | {:.2} s, {:.0} samples/s",
                            m.epoch,
                            c.max_epochs,
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
        let outcomes = if args.autodiff {
            vec![device::train_autodiff_on(
                args.device,
                &data,
                &pack[0],
                &options,
                &mut |p| observe(0, p),
            )]
        } else {
            device::train_pack_on(args.device, &data, &pack, &options, &mut observe)?
        };
        for (config, outcome) in pack.iter().zip(outcomes) {
            let summary = match outcome {
                Ok(s) => s,
                Err(e) if several => {
                    failed += 1;
                    if json_mode {
                        println!(
                            "{}",
                            json!({"final": true, "seed": config.seed, "lr": config.learning_rate, "error": e.to_string()})
                        );
                    } else {
                        println!(
                            "[seed {} lr {:e}] failed: {e}",
                            config.seed, config.learning_rate
                        );
                    }
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            print_final(&args, &data, config, &summary, json_mode, several);
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {} trials failed", configs.len());
    }
    Ok(())
}

/// The last line of a trial: its result, with its seed and learning rate.
fn print_final(
    args: &TrainArgs,
    data: &jetsweep_data::Prepared,
    config: &Hyperparameters,
    summary: &crate::train::Summary,
    json_mode: bool,
    several: bool,
) {
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
                "weight_decay": config.weight_decay,
                "seed": config.seed,
                "device": args.device.to_string(),
                "dataset": data.provenance.source,
                "synthetic": data.provenance.synthetic,
                "dataset_sha256": data.provenance.sha256,
            })
        );
    } else {
        println!(
            "{}final: test acc {:.4} (last epoch); best val loss at epoch {} ({}) → test acc {:.4}{}",
            if several {
                format!("[seed {} lr {:e}] ", config.seed, config.learning_rate)
            } else {
                String::new()
            },
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
}
