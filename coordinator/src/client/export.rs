//! A kept model as files a user takes elsewhere: a safetensors file whose tensors carry the names
//! of MASE's own modules (`model.load_state_dict(safetensors.torch.load_file(F))` with
//! `strict=True` on MASE's class), whose header says where the weights came from (model,
//! hyperparameters, epoch, dataset, validation kind, that epoch's metrics, the scaler), and a
//! small JSON beside it with the dataset's standard scaler: a user's raw jets must be scaled the
//! same way before the model sees them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use jetsweep_proto::model::Architecture;
use jetsweep_proto::v1 as pb;
use jetsweep_proto::weights::{ModelWeights, TensorValues};
use safetensors::tensor::{Dtype, TensorView};

/// The formats `jetsweep model` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Safetensors,
    Onnx,
}

impl Format {
    /// The format a file's extension names.
    pub fn of(path: &Path) -> Result<Format, String> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("safetensors") => Ok(Format::Safetensors),
            Some("onnx") => Ok(Format::Onnx),
            other => Err(format!(
                "{}: no format for the extension {:?}; name the file *.safetensors or *.onnx, or give --format",
                path.display(),
                other.unwrap_or("")
            )),
        }
    }
}

/// The scaling JSON's path for a model file: `NAME.scaling.json` beside `NAME.safetensors`.
pub fn scaling_path(model_file: &Path) -> PathBuf {
    model_file.with_extension("scaling.json")
}

/// The safetensors bytes of `model` (as `GetModel` answered for `sweep_id`), and its scaling JSON.
pub fn safetensors(
    sweep_id: &str,
    model: &pb::GetModelResponse,
) -> Result<(Vec<u8>, String), String> {
    let weights = ModelWeights::decode(&model.weights)?;
    let meta = metadata(sweep_id, model, &weights);
    let arch: Architecture = weights
        .model
        .parse()
        .map_err(|e| format!("model {}: {e}", weights.model))?;
    let dict = weights.state_dict(&arch)?;
    let bytes: Vec<Vec<u8>> = dict
        .iter()
        .map(|t| match &t.values {
            TensorValues::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorValues::I64(n) => n.to_le_bytes().to_vec(),
        })
        .collect();
    let views = dict
        .iter()
        .zip(&bytes)
        .map(|(t, b)| {
            let dtype = match t.values {
                TensorValues::F32(_) => Dtype::F32,
                TensorValues::I64(_) => Dtype::I64,
            };
            TensorView::new(dtype, t.shape.clone(), b)
                .map(|v| (t.name.clone(), v))
                .map_err(|e| format!("tensor {}: {e}", t.name))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let file = safetensors::tensor::serialize(views, Some(meta)).map_err(|e| e.to_string())?;
    Ok((file, scaling_json(model)))
}

/// The file of `model` (as `GetModel` answered for `sweep_id`) in `format`, and its scaling JSON.
pub fn export(
    format: Format,
    sweep_id: &str,
    model: &pb::GetModelResponse,
) -> Result<(Vec<u8>, String), String> {
    match format {
        Format::Safetensors => safetensors(sweep_id, model),
        Format::Onnx => {
            let weights = ModelWeights::decode(&model.weights)?;
            let mut meta: Vec<(String, String)> =
                metadata(sweep_id, model, &weights).into_iter().collect();
            meta.sort();
            Ok((
                super::onnx::model_file(&weights, &meta)?,
                scaling_json(model),
            ))
        }
    }
}

/// Where the weights came from, as the files' metadata: every value a string.
fn metadata(
    sweep_id: &str,
    model: &pb::GetModelResponse,
    weights: &ModelWeights,
) -> HashMap<String, String> {
    let trial = model.trial.clone().unwrap_or_default();
    let dataset = trial.dataset.clone().unwrap_or_default();
    let scaling = scaling_json(model);
    let mut meta: HashMap<String, String> = HashMap::new();
    let mut put = |k: &str, v: String| {
        meta.insert(k.to_string(), v);
    };
    // "pt": what safetensors.torch and Hugging Face tools expect of a PyTorch state_dict.
    put("format", "pt".into());
    put(
        "producer",
        format!("jetsweep {}", env!("CARGO_PKG_VERSION")),
    );
    put("model", weights.model.clone());
    put("mase_class", mase_class(&weights.model));
    put("sweep_id", sweep_id.to_string());
    put("job_id", model.job_id.clone());
    put("point", model.point.to_string());
    put("epoch", model.epoch.to_string());
    put(
        "kept",
        if model.epoch == trial.max_epochs {
            "best or last epoch".into()
        } else {
            "best epoch (lowest validation loss)".into()
        },
    );
    put("optimizer", trial.optimizer.clone());
    put("batch_size", trial.batch_size.to_string());
    put("max_epochs", trial.max_epochs.to_string());
    put("learning_rate", format!("{:e}", trial.learning_rate));
    put("weight_decay", format!("{:e}", trial.weight_decay));
    put("seed", trial.seed.to_string());
    put("dataset", dataset.spec.clone());
    put("dataset_sha256", dataset.sha256.clone());
    put("synthetic", dataset.synthetic.to_string());
    put("validation", dataset.validation.clone());
    if let Some(m) = &model.metrics {
        put(
            "metrics",
            serde_json::json!({
                "epoch": m.epoch, "train_loss": m.train_loss, "train_acc": m.train_acc,
                "val_loss": m.val_loss, "val_acc": m.val_acc,
                "test_loss": m.test_loss, "test_acc": m.test_acc,
            })
            .to_string(),
        );
    }
    put("scaler", scaling.clone());
    put(
        "input",
        "x [N, 16] float32, standard-scaled with `scaler` (x - mean) / std, features in MASE's order".into(),
    );
    put(
        "output",
        "5 logits after MASE's final ReLU: g, q, W, Z, t".into(),
    );
    meta
}

/// MASE's class for a model name (jetsweep's own `mlp:` models have none).
fn mase_class(model: &str) -> String {
    match model {
        "jsc-tiny" => "JSC_Tiny".into(),
        "jsc-toy" => "JSC_Toy".into(),
        "jsc-s" => "JSC_S".into(),
        other => format!("none (jetsweep's {other}: BN16 ReLU, then Linear [BN] ReLU stages)"),
    }
}

/// The dataset's standard scaler, with the features it applies to.
fn scaling_json(model: &pb::GetModelResponse) -> String {
    serde_json::to_string_pretty(&serde_json::json!({
        "features": jetsweep_data::FEATURE_NAMES,
        "mean": model.scaler_mean,
        "std": model.scaler_std,
        "scaled_as": if model.scaler_mean.is_empty() {
            "the source came scaled: use its features as they are"
        } else {
            "(x - mean) / std, per feature, before the model"
        },
    }))
    .expect("JSON")
}

/// `path`'s folder, which must exist (checked before anything is fetched or written).
pub fn folder_of(path: &Path) -> Result<&Path, String> {
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !folder.is_dir() {
        return Err(format!(
            "{}: the folder {} does not exist (make it first)",
            path.display(),
            folder.display()
        ));
    }
    Ok(folder)
}

/// Writes `bytes` to `path` through a temporary file in the same folder; the folder must exist.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let folder = folder_of(path)?;
    let name = path
        .file_name()
        .ok_or_else(|| format!("{}: not a file name", path.display()))?;
    let temporary = folder.join(format!(".{}.partial", name.to_string_lossy()));
    std::fs::write(&temporary, bytes)
        .and_then(|()| std::fs::rename(&temporary, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&temporary);
            format!("{}: {e}", path.display())
        })
}
