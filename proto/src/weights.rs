//! A trained model's weights, as a worker sends them with a finished trial and the coordinator
//! keeps them: the model's tensors after one epoch (its best, or its last), and their names in
//! MASE's own modules, so an export loads into MASE's classes with `strict=True`.
//!
//! Tensor order (the worker's `Mlp` field order): the input BatchNorm's γ, β, running mean,
//! running variance; then per stage the Linear's weight `[in, out]` row-major and bias, then the
//! stage's BatchNorm (γ, β, mean, variance) when it has one.
//!
//! MASE's layout is one `nn.Sequential` (`seq_blocks`; `jsc-s`: one `nn.ModuleList`,
//! `module_list`): `BatchNorm1d(16)`, `ReLU`, then per stage `Linear`, [`BatchNorm1d`], `ReLU`, each
//! module one index. PyTorch keeps a Linear's weight as `[out, in]`, and every BatchNorm a
//! `num_batches_tracked` (the optimizer steps taken in training mode).
//!
//! Encoding (little-endian): `JSCW`, format version (u16), epoch (u32), steps (u64), the model's
//! name (u16 length + UTF-8), the tensors (u32 count, each u32 length + f32 values). Decoding checks
//! every length against what is left; [`ModelWeights::check`] checks the shapes against the model.

use crate::model::Architecture;

const MAGIC: &[u8; 4] = b"JSCW";
const VERSION: u16 = 1;

/// Largest weights file accepted (jsc-s is ~25 KB; the widest `mlp:` a sweep allows fits).
pub const MAX_WEIGHTS_BYTES: usize = 64 << 20;

/// One model's tensors after one epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelWeights {
    /// The model's canonical name (`jsc-tiny`, `mlp:64,32`).
    pub model: String,
    /// The epoch (1-based) these are the weights after.
    pub epoch: u32,
    /// Optimizer steps taken by then (each BatchNorm's `num_batches_tracked`).
    pub steps: u64,
    pub tensors: Vec<Vec<f32>>,
}

/// A tensor of MASE's `state_dict`: its name, its shape, and where its values come from.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub values: TensorValues,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TensorValues {
    F32(Vec<f32>),
    /// `num_batches_tracked`: a 0-dimensional int64.
    I64(i64),
}

/// The shapes of `arch`'s tensors in the worker's order (see the module documentation), each
/// with the MASE module index it belongs to and its field name.
fn layout(arch: &Architecture) -> Vec<(usize, &'static str, Vec<usize>)> {
    let mut out = Vec::new();
    let norm = |out: &mut Vec<(usize, &'static str, Vec<usize>)>, index: usize, width: usize| {
        for field in ["weight", "bias", "running_mean", "running_var"] {
            out.push((index, field, vec![width]));
        }
    };
    norm(&mut out, 0, jetsweep_data::NUM_FEATURES);
    // 0: BatchNorm1d(16), 1: ReLU; then each stage: Linear, [BatchNorm1d], ReLU.
    let mut index = 2;
    let mut fan_in = jetsweep_data::NUM_FEATURES;
    for stage in &arch.stages {
        out.push((index, "weight", vec![fan_in, stage.width]));
        out.push((index, "bias", vec![stage.width]));
        index += 1;
        if stage.norm {
            norm(&mut out, index, stage.width);
            index += 1;
        }
        index += 1; // the ReLU
        fan_in = stage.width;
    }
    out
}

/// The container MASE's class keeps its layers in.
pub fn container(arch: &Architecture) -> &'static str {
    if arch.name == "jsc-s" {
        "module_list"
    } else {
        "seq_blocks"
    }
}

impl ModelWeights {
    pub fn encode(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(32 + self.tensors.iter().map(|t| 4 + 4 * t.len()).sum::<usize>());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&self.epoch.to_le_bytes());
        out.extend_from_slice(&self.steps.to_le_bytes());
        out.extend_from_slice(&(self.model.len() as u16).to_le_bytes());
        out.extend_from_slice(self.model.as_bytes());
        out.extend_from_slice(&(self.tensors.len() as u32).to_le_bytes());
        for t in &self.tensors {
            out.extend_from_slice(&(t.len() as u32).to_le_bytes());
            for v in t {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        out
    }

    /// Reads the bytes (at most [`MAX_WEIGHTS_BYTES`]), checking every length.
    pub fn decode(bytes: &[u8]) -> Result<ModelWeights, String> {
        if bytes.len() > MAX_WEIGHTS_BYTES {
            return Err(format!(
                "{} bytes of weights: at most {MAX_WEIGHTS_BYTES}",
                bytes.len()
            ));
        }
        let mut r = Reader(bytes);
        if r.take(4)? != MAGIC {
            return Err("not a jetsweep weights file".into());
        }
        let version = u16::from_le_bytes(r.array()?);
        if version != VERSION {
            return Err(format!(
                "weights format version {version}; this reads {VERSION}"
            ));
        }
        let epoch = u32::from_le_bytes(r.array()?);
        let steps = u64::from_le_bytes(r.array()?);
        let name_len = u16::from_le_bytes(r.array()?) as usize;
        let model = std::str::from_utf8(r.take(name_len)?)
            .map_err(|_| "the model's name is not UTF-8".to_string())?
            .to_string();
        let count = r.count(4)?;
        let mut tensors = Vec::with_capacity(count);
        for _ in 0..count {
            let n = r.count(4)?;
            tensors.push(
                r.take(n * 4)?
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
                    .collect(),
            );
        }
        if !r.0.is_empty() {
            return Err(format!("{} bytes after the last tensor", r.0.len()));
        }
        Ok(ModelWeights {
            model,
            epoch,
            steps,
            tensors,
        })
    }

    /// Whether the tensors have `arch`'s shapes, in its order; and every value is finite.
    pub fn check(&self, arch: &Architecture) -> Result<(), String> {
        let layout = layout(arch);
        if self.tensors.len() != layout.len() {
            return Err(format!(
                "{} tensors for {}, which has {}",
                self.tensors.len(),
                arch.name,
                layout.len()
            ));
        }
        for (i, (t, (_, field, shape))) in self.tensors.iter().zip(&layout).enumerate() {
            let want: usize = shape.iter().product();
            if t.len() != want {
                return Err(format!(
                    "tensor {i} ({field}) of {} has {} values, not {want}",
                    arch.name,
                    t.len()
                ));
            }
            if t.iter().any(|v| !v.is_finite()) {
                return Err(format!(
                    "tensor {i} ({field}) holds a value that is not finite"
                ));
            }
        }
        Ok(())
    }

    /// The tensors under MASE's names, as PyTorch's `state_dict` of MASE's class holds them:
    /// Linear weights `[out, in]`, each BatchNorm's `num_batches_tracked` = steps. Checks first.
    pub fn state_dict(&self, arch: &Architecture) -> Result<Vec<NamedTensor>, String> {
        self.check(arch)?;
        let prefix = container(arch);
        let mut out = Vec::new();
        for (t, (index, field, shape)) in self.tensors.iter().zip(layout(arch)) {
            let name = format!("{prefix}.{index}.{field}");
            if shape.len() == 2 {
                let (fan_in, width) = (shape[0], shape[1]);
                let mut transposed = vec![0f32; t.len()];
                for i in 0..fan_in {
                    for o in 0..width {
                        transposed[o * fan_in + i] = t[i * width + o];
                    }
                }
                out.push(NamedTensor {
                    name,
                    shape: vec![width, fan_in],
                    values: TensorValues::F32(transposed),
                });
            } else {
                out.push(NamedTensor {
                    name,
                    shape,
                    values: TensorValues::F32(t.clone()),
                });
                if field == "running_var" {
                    out.push(NamedTensor {
                        name: format!("{prefix}.{index}.num_batches_tracked"),
                        shape: vec![],
                        values: TensorValues::I64(self.steps as i64),
                    });
                }
            }
        }
        Ok(out)
    }

    /// The inverse of [`ModelWeights::state_dict`]: the worker's tensors from MASE's names
    /// (`get(name)` gives a tensor's shape and values), for a model read back from an export.
    pub fn from_state_dict(
        arch: &Architecture,
        epoch: u32,
        mut get: impl FnMut(&str) -> Option<(Vec<usize>, Vec<f32>)>,
    ) -> Result<ModelWeights, String> {
        let prefix = container(arch);
        let mut tensors = Vec::new();
        for (index, field, shape) in layout(arch) {
            let name = format!("{prefix}.{index}.{field}");
            let (got, values) = get(&name).ok_or_else(|| format!("no tensor {name}"))?;
            if shape.len() == 2 {
                let (fan_in, width) = (shape[0], shape[1]);
                if got != [width, fan_in] {
                    return Err(format!("{name} is {got:?}, not [{width}, {fan_in}]"));
                }
                let mut ours = vec![0f32; values.len()];
                for o in 0..width {
                    for i in 0..fan_in {
                        ours[i * width + o] = values[o * fan_in + i];
                    }
                }
                tensors.push(ours);
            } else {
                if got != shape {
                    return Err(format!("{name} is {got:?}, not {shape:?}"));
                }
                tensors.push(values);
            }
        }
        let weights = ModelWeights {
            model: arch.name.clone(),
            epoch,
            steps: 0,
            tensors,
        };
        weights.check(arch)?;
        Ok(weights)
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err(format!(
                "it ends early ({} bytes left, {n} needed)",
                self.0.len()
            ));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        Ok(self.take(N)?.try_into().expect("took N bytes"))
    }
    fn count(&mut self, min_bytes: usize) -> Result<usize, String> {
        let n = u32::from_le_bytes(self.array()?) as usize;
        if n.saturating_mul(min_bytes) > self.0.len() {
            return Err(format!("it claims {n} items in {} bytes", self.0.len()));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> (Architecture, ModelWeights) {
        let arch: Architecture = "jsc-tiny".parse().unwrap();
        let tensors = vec![
            vec![1.0; 16],
            vec![0.0; 16],
            vec![0.5; 16],
            vec![2.0; 16],
            (0..80).map(|i| i as f32).collect(),
            vec![0.1; 5],
        ];
        (
            arch,
            ModelWeights {
                model: "jsc-tiny".into(),
                epoch: 3,
                steps: 42,
                tensors,
            },
        )
    }

    #[test]
    fn jsc_tiny_has_mase_names_and_transposed_linear_weights() {
        let (arch, w) = tiny();
        let names: Vec<(String, Vec<usize>)> = w
            .state_dict(&arch)
            .unwrap()
            .into_iter()
            .map(|t| (t.name, t.shape))
            .collect();
        let want = [
            ("seq_blocks.0.weight", vec![16]),
            ("seq_blocks.0.bias", vec![16]),
            ("seq_blocks.0.running_mean", vec![16]),
            ("seq_blocks.0.running_var", vec![16]),
            ("seq_blocks.0.num_batches_tracked", vec![]),
            ("seq_blocks.2.weight", vec![5, 16]),
            ("seq_blocks.2.bias", vec![5]),
        ];
        assert_eq!(
            names,
            want.iter()
                .map(|(n, s)| (n.to_string(), s.clone()))
                .collect::<Vec<_>>()
        );
        let dict = w.state_dict(&arch).unwrap();
        // Ours [in=16, out=5] row-major: value i*5+o; PyTorch's [5, 16]: row o, column i.
        let TensorValues::F32(linear) = &dict[5].values else {
            panic!()
        };
        assert_eq!(linear[16 + 2], (2 * 5 + 1) as f32);
        assert_eq!(dict[4].values, TensorValues::I64(42));
        // And back.
        let back = ModelWeights::from_state_dict(&arch, 3, |name| {
            dict.iter()
                .find(|t| t.name == name)
                .map(|t| match &t.values {
                    TensorValues::F32(v) => (t.shape.clone(), v.clone()),
                    TensorValues::I64(_) => (vec![], vec![]),
                })
        })
        .unwrap();
        assert_eq!(back.tensors, w.tensors);
    }

    #[test]
    fn the_other_models_number_their_modules_as_mase_does() {
        let names = |model: &str| -> Vec<String> {
            let arch: Architecture = model.parse().unwrap();
            layout(&arch)
                .into_iter()
                .map(|(i, f, _)| format!("{}.{i}.{f}", container(&arch)))
                .filter(|n| n.ends_with(".weight"))
                .collect()
        };
        // jsc-toy: BN16 ReLU, Lin BN ReLU ×3.
        assert_eq!(
            names("jsc-toy"),
            [
                "seq_blocks.0.weight",
                "seq_blocks.2.weight",
                "seq_blocks.3.weight",
                "seq_blocks.5.weight",
                "seq_blocks.6.weight",
                "seq_blocks.8.weight",
                "seq_blocks.9.weight"
            ]
        );
        // jsc-s: a ModuleList; BN only after the first and last Linear.
        assert_eq!(
            names("jsc-s"),
            [
                "module_list.0.weight",
                "module_list.2.weight",
                "module_list.3.weight",
                "module_list.5.weight",
                "module_list.7.weight",
                "module_list.9.weight",
                "module_list.11.weight",
                "module_list.12.weight"
            ]
        );
    }

    #[test]
    fn bytes_round_trip_and_damage_is_refused() {
        let (arch, w) = tiny();
        let bytes = w.encode();
        assert_eq!(ModelWeights::decode(&bytes).unwrap(), w);
        for cut in [0, 5, 20, bytes.len() - 1] {
            assert!(ModelWeights::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(ModelWeights::decode(&extra).is_err());
        let mut short = w.clone();
        short.tensors[4].pop();
        assert!(short.check(&arch).unwrap_err().contains("79 values"));
        let mut nan = w;
        nan.tensors[0][0] = f32::NAN;
        assert!(nan.check(&arch).is_err());
    }
}
