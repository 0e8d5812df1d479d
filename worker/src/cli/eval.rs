//! `jetsweep-worker eval --model-file FILE --dataset D`: the accuracy of an exported model (the
//! safetensors file `jetsweep model` writes) on a dataset's test split, computed here from the
//! file alone — a check that the exported weights behave as the sweep's results say.

use std::path::PathBuf;

use clap::Args;
use jetsweep_data::{NUM_CLASSES, NUM_FEATURES, Split};
use jetsweep_proto::model::Architecture;
use jetsweep_proto::weights::ModelWeights;
use safetensors::SafeTensors;
use safetensors::tensor::Dtype;

use super::dataset_args::{DatasetArgs, describe};
use crate::train::recipe::BN_EPSILON;

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The exported model (`jetsweep model ID --out FILE.safetensors`).
    #[arg(long, value_name = "FILE")]
    pub model_file: PathBuf,
    #[command(flatten)]
    pub data: DatasetArgs,
}

/// The model in `bytes` (a safetensors file with jetsweep's metadata), and that metadata.
type Read = (
    Architecture,
    ModelWeights,
    serde_json::Value,
    Option<String>,
);

fn read_model(bytes: &[u8]) -> anyhow::Result<Read> {
    let (_, header) = SafeTensors::read_metadata(bytes)?;
    let meta = header.metadata().clone().ok_or_else(|| {
        anyhow::anyhow!("no metadata in the file: not one `jetsweep model` wrote")
    })?;
    let name = meta
        .get("model")
        .ok_or_else(|| anyhow::anyhow!("the metadata names no model"))?;
    let arch: Architecture = name
        .parse()
        .map_err(|e| anyhow::anyhow!("model {name:?}: {e}"))?;
    let file = SafeTensors::deserialize(bytes)?;
    let epoch = meta.get("epoch").and_then(|e| e.parse().ok()).unwrap_or(0);
    let weights = ModelWeights::from_state_dict(&arch, epoch, |name| {
        let t = file.tensor(name).ok()?;
        (t.dtype() == Dtype::F32).then(|| {
            let values = t
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
                .collect();
            (t.shape().to_vec(), values)
        })
    })
    .map_err(anyhow::Error::msg)?;
    let metrics = meta
        .get("metrics")
        .and_then(|m| serde_json::from_str(m).ok())
        .unwrap_or(serde_json::Value::Null);
    Ok((arch, weights, metrics, meta.get("dataset_sha256").cloned()))
}

/// The model's class for each row of `split` (eval mode: BatchNorm with its running statistics).
fn predict(arch: &Architecture, w: &ModelWeights, split: &Split) -> Vec<usize> {
    let eps = BN_EPSILON as f32;
    let norm = |x: &mut [f32], t: &[Vec<f32>]| {
        for (i, v) in x.iter_mut().enumerate() {
            *v = (*v - t[2][i]) / (t[3][i] + eps).sqrt() * t[0][i] + t[1][i];
        }
    };
    let mut out = Vec::with_capacity(split.len());
    for row in split.x.chunks_exact(NUM_FEATURES) {
        let mut x = row.to_vec();
        norm(&mut x, &w.tensors[0..4]);
        x.iter_mut().for_each(|v| *v = v.max(0.0));
        let mut at = 4;
        for stage in &arch.stages {
            let (weight, bias) = (&w.tensors[at], &w.tensors[at + 1]);
            at += 2;
            let fan_in = x.len();
            let mut y = bias.clone();
            for (i, xi) in x.iter().enumerate() {
                for (o, yo) in y.iter_mut().enumerate() {
                    *yo += xi * weight[i * stage.width + o];
                }
            }
            debug_assert_eq!(weight.len(), fan_in * stage.width);
            if stage.norm {
                norm(&mut y, &w.tensors[at..at + 4]);
                at += 4;
            }
            y.iter_mut().for_each(|v| *v = v.max(0.0));
            x = y;
        }
        debug_assert_eq!(x.len(), NUM_CLASSES);
        // The first of equal logits, as argmax does in PyTorch and in training.
        let mut best = 0;
        for (c, v) in x.iter().enumerate() {
            if *v > x[best] {
                best = c;
            }
        }
        out.push(best);
    }
    out
}

pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    let bytes = std::fs::read(&args.model_file)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.model_file.display()))?;
    let (arch, weights, metrics, trained_on) =
        read_model(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", args.model_file.display()))?;
    let data = args.data.load()?;
    eprintln!("{}", describe(&data));
    let predicted = predict(&arch, &weights, &data.test);
    let right = predicted
        .iter()
        .zip(&data.test.y)
        .filter(|(p, y)| **p == usize::from(**y))
        .count();
    let acc = right as f64 / data.test.len().max(1) as f64;
    println!(
        "{}: {} after epoch {}: test accuracy {acc:.4} ({right} of {} rows)",
        args.model_file.display(),
        arch.name,
        weights.epoch,
        data.test.len()
    );
    match trained_on {
        Some(sha) if sha != data.provenance.sha256 => println!(
            "note: the model was trained on dataset {}; this one is {} (the sweep's numbers are not comparable)",
            &sha[..sha.len().min(16)],
            &data.provenance.sha256[..16]
        ),
        _ => {
            if let Some(said) = metrics["test_acc"].as_f64() {
                println!("the sweep recorded {said:.4} for that epoch");
            }
        }
    }
    Ok(())
}
