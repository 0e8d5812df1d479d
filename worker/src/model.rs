//! The JSC models, as burn modules.
//!
//! A model's shape ([`Architecture`], parsed from its name) is part of the shared vocabulary in
//! `jetsweep-proto`; this module builds it. Every MASE JSC model has the same skeleton, so one
//! module type, [`Mlp`], describes them all:
//! `BatchNorm1d(16) → ReLU`, then stages of `Linear → [BatchNorm1d] → ReLU`, the last stage producing
//! the 5 class scores. The final ReLU acts on the logits fed to cross-entropy: that is what MASE does.
//! Tensor shapes: input `[batch, 16]` scaled features, output `[batch, 5]` non-negative logits.
//!
//! Parameters are initialised on the host from the trial seed with PyTorch's default distributions
//! (Linear: weight and bias U(±1/√fan_in); BatchNorm: γ=1, β=0), so CPU and GPU start from the same
//! numbers and a run can hand its exact starting point to the PyTorch reference.

use burn::module::{Module, Param, RunningState};
use burn::tensor::activation::relu;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use jetsweep_data::NUM_FEATURES;
use jetsweep_data::rng::SplitMix64;

use crate::error::WorkerError;
use crate::train::recipe::{BN_EPSILON, BN_MOMENTUM};

pub use jetsweep_proto::model::{Architecture, MODELS, StageShape};

/// Builds `arch` with parameters drawn from `seed`.
pub fn init<B: Backend>(arch: &Architecture, seed: u64, device: &B::Device) -> Mlp<B> {
    let mut rng = SplitMix64::derive(seed, "init", 0);
    let mut fan_in = NUM_FEATURES;
    let mut built = Vec::with_capacity(arch.stages.len());
    for s in &arch.stages {
        built.push(Stage {
            linear: Dense::init(fan_in, s.width, &mut rng, device),
            norm: s.norm.then(|| BatchNorm1d::init(s.width, device)),
        });
        fan_in = s.width;
    }
    Mlp {
        input_norm: BatchNorm1d::init(NUM_FEATURES, device),
        stages: built,
    }
}

/// A JSC model: see the module documentation.
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    pub input_norm: BatchNorm1d<B>,
    pub stages: Vec<Stage<B>>,
}

/// `Linear → [BatchNorm1d] → ReLU`.
#[derive(Module, Debug)]
pub struct Stage<B: Backend> {
    pub linear: Dense<B>,
    pub norm: Option<BatchNorm1d<B>>,
}

impl<B: Backend> Mlp<B> {
    /// `[batch, 16]` → `[batch, 5]` ReLU'd logits. Training statistics are used when the input lives
    /// on an autodiff device, running statistics otherwise (burn's convention, as `model.valid()`).
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let mut x = relu(self.input_norm.forward(x));
        for stage in &self.stages {
            x = stage.linear.forward(x);
            if let Some(norm) = &stage.norm {
                x = norm.forward(x);
            }
            x = relu(x);
        }
        x
    }

    /// Every tensor of the model as host values, in field order — per BatchNorm γ, β, running
    /// mean, running variance; per stage the weight `[in, out]` row-major, the bias, then its
    /// BatchNorm — which is the checkpoint's order.
    pub fn tensors(&self) -> Vec<Vec<f32>> {
        let norm = |n: &BatchNorm1d<B>| {
            [
                host(n.gamma.val()),
                host(n.beta.val()),
                host(n.running_mean.value()),
                host(n.running_var.value()),
            ]
        };
        let mut out = Vec::from(norm(&self.input_norm));
        for s in &self.stages {
            out.push(host(s.linear.weight.val()));
            out.push(host(s.linear.bias.val()));
            if let Some(n) = &s.norm {
                out.extend(norm(n));
            }
        }
        out
    }
}

/// A tensor's values on the host, as f32.
pub(crate) fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .into_vec()
        .expect("converted to f32")
}

/// A fully connected layer: `y = x W + b`, `W` stored `[in, out]`.
#[derive(Module, Debug)]
pub struct Dense<B: Backend> {
    pub weight: Param<Tensor<B, 2>>,
    pub bias: Param<Tensor<B, 1>>,
}

impl<B: Backend> Dense<B> {
    fn init(fan_in: usize, fan_out: usize, rng: &mut SplitMix64, device: &B::Device) -> Self {
        // PyTorch: kaiming_uniform(a=√5) for the weight and U(±1/√fan_in) for the bias: the same bound.
        let bound = 1.0 / (fan_in as f64).sqrt();
        let mut uniform = |n: usize| -> Vec<f32> {
            (0..n)
                .map(|_| ((2.0 * rng.next_f64() - 1.0) * bound) as f32)
                .collect()
        };
        // Drawn in PyTorch's [out, in] order, stored transposed.
        let w_out_in = uniform(fan_in * fan_out);
        let mut w = vec![0f32; fan_in * fan_out];
        for o in 0..fan_out {
            for i in 0..fan_in {
                w[i * fan_out + o] = w_out_in[o * fan_in + i];
            }
        }
        let b = uniform(fan_out);
        Dense {
            weight: Param::from_tensor(Tensor::from_data(
                TensorData::new(w, [fan_in, fan_out]),
                device,
            )),
            bias: Param::from_tensor(Tensor::from_data(TensorData::new(b, [fan_out]), device)),
        }
    }

    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        burn::tensor::module::linear(x, self.weight.val(), Some(self.bias.val()))
    }
}

/// BatchNorm over the feature axis of `[batch, features]`, as PyTorch's `BatchNorm1d`: batch statistics
/// when training, running statistics otherwise; the running variance is updated with the *unbiased*
/// batch variance, as PyTorch does (burn's own BatchNorm uses the biased one).
#[derive(Module, Debug)]
pub struct BatchNorm1d<B: Backend> {
    pub gamma: Param<Tensor<B, 1>>,
    pub beta: Param<Tensor<B, 1>>,
    pub running_mean: RunningState<Tensor<B, 1>>,
    pub running_var: RunningState<Tensor<B, 1>>,
}

impl<B: Backend> BatchNorm1d<B> {
    fn init(features: usize, device: &B::Device) -> Self {
        BatchNorm1d {
            gamma: Param::from_tensor(Tensor::ones([features], device)),
            beta: Param::from_tensor(Tensor::zeros([features], device)),
            running_mean: RunningState::new(Tensor::zeros([features], device)),
            running_var: RunningState::new(Tensor::ones([features], device)),
        }
    }

    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let [batch, features] = x.dims();
        if B::ad_enabled(&x.device()) {
            let mean = x.clone().mean_dim(0); // [1, F]
            let centered = x - mean.clone();
            let var = centered.clone().square().mean_dim(0); // biased, used to normalise
            if batch > 1 {
                let unbiased = batch as f64 / (batch - 1) as f64;
                let rm = self.running_mean.value_sync();
                let rv = self.running_var.value_sync();
                self.running_mean.update(
                    (rm.mul_scalar(1.0 - BN_MOMENTUM)
                        + mean.detach().reshape([features]).mul_scalar(BN_MOMENTUM))
                    .detach(),
                );
                self.running_var.update(
                    (rv.mul_scalar(1.0 - BN_MOMENTUM)
                        + var
                            .clone()
                            .detach()
                            .reshape([features])
                            .mul_scalar(BN_MOMENTUM * unbiased))
                    .detach(),
                );
            }
            self.affine(centered / var.add_scalar(BN_EPSILON).sqrt(), features)
        } else {
            let mean = self.running_mean.value().reshape([1, features]);
            let std = self
                .running_var
                .value()
                .add_scalar(BN_EPSILON)
                .sqrt()
                .reshape([1, features]);
            self.affine((x - mean) / std, features)
        }
    }

    fn affine(&self, normalised: Tensor<B, 2>, features: usize) -> Tensor<B, 2> {
        normalised * self.gamma.val().reshape([1, features])
            + self.beta.val().reshape([1, features])
    }
}

/// A named host array: name, shape, values (row-major).
pub type NamedArray = (String, Vec<usize>, Vec<f32>);

/// A model's parameters as named host arrays in PyTorch's layout, for handing a run's exact starting
/// point to the reference trainer (`--init-npz`). Names follow `jsc_reference.py` for jsc-tiny.
pub fn export_jsc_tiny<B: Backend>(model: &Mlp<B>) -> Result<Vec<NamedArray>, WorkerError> {
    if model.stages.len() != 1 || model.stages[0].norm.is_some() {
        return Err(WorkerError::Invalid(
            "exporting initial weights is defined for jsc-tiny only".into(),
        ));
    }
    let host = |t: Tensor<B, 1>| -> Vec<f32> {
        t.into_data()
            .convert::<f32>()
            .into_vec()
            .unwrap_or_default()
    };
    let bn = &model.input_norm;
    let fc = &model.stages[0].linear;
    let w = fc.weight.val(); // [16, 5]
    let [fan_in, fan_out] = w.dims();
    let w_out_in = host(w.transpose().reshape([fan_in * fan_out]));
    Ok(vec![
        ("bn_weight".into(), vec![NUM_FEATURES], host(bn.gamma.val())),
        ("bn_bias".into(), vec![NUM_FEATURES], host(bn.beta.val())),
        (
            "bn_running_mean".into(),
            vec![NUM_FEATURES],
            host(bn.running_mean.value()),
        ),
        (
            "bn_running_var".into(),
            vec![NUM_FEATURES],
            host(bn.running_var.value()),
        ),
        ("fc_weight".into(), vec![fan_out, fan_in], w_out_in),
        ("fc_bias".into(), vec![fan_out], host(fc.bias.val())),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::module::AutodiffModule;

    type B = Flex;

    #[test]
    /// The built module has the parameters the shared grammar counts by arithmetic (whose own
    /// test holds those counts to MASE's).
    fn built_models_have_the_counted_parameters() {
        for name in ["jsc-tiny", "jsc-toy", "jsc-s", "jsc-tiny-x10", "mlp:64,32"] {
            let arch: Architecture = name.parse().unwrap();
            let expected = arch.param_count();
            // burn counts BatchNorm's running statistics too; they are state, not trainable parameters.
            let model = init::<B>(&arch, 0, &Default::default());
            let norms = std::iter::once(&model.input_norm)
                .chain(model.stages.iter().filter_map(|s| s.norm.as_ref()));
            let running: usize = norms.map(|bn| 2 * bn.running_mean.value().dims()[0]).sum();
            assert_eq!(model.num_params() - running, expected, "{name} as built");
        }
    }

    #[test]
    fn forward_maps_batch_by_16_to_batch_by_5_non_negative() {
        let device = Default::default();
        for name in ["jsc-tiny", "jsc-toy", "jsc-s", "jsc-tiny-x10"] {
            let model = name.parse::<Architecture>().unwrap();
            let model = init::<Autodiff<B>>(&model, 1, &device);
            let x = Tensor::<Autodiff<B>, 2>::from_data(
                TensorData::new(
                    (0..7 * 16)
                        .map(|v| (v % 13) as f32 - 6.0)
                        .collect::<Vec<_>>(),
                    [7, 16],
                ),
                &device,
            );
            let train_out = model.forward(x.clone());
            assert_eq!(train_out.dims(), [7, 5], "{name}");
            let eval_out = model.valid().forward(x.inner());
            assert_eq!(eval_out.dims(), [7, 5], "{name}");
            let values = eval_out.into_data().into_vec::<f32>().unwrap();
            assert!(
                values.iter().all(|v| *v >= 0.0),
                "{name}: the last ReLU makes logits non-negative"
            );
        }
    }

    #[test]
    fn initialisation_follows_the_seed_and_pytorch_bounds() {
        let arch: Architecture = "jsc-tiny".parse().unwrap();
        let a = export_jsc_tiny(&init::<B>(&arch, 5, &Default::default())).unwrap();
        let b = export_jsc_tiny(&init::<B>(&arch, 5, &Default::default())).unwrap();
        let c = export_jsc_tiny(&init::<B>(&arch, 6, &Default::default())).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        let weight = &a.iter().find(|(n, _, _)| n == "fc_weight").unwrap();
        assert_eq!(weight.1, vec![5, 16]);
        assert!(weight.2.iter().all(|w| w.abs() <= 0.25), "U(±1/√16)");
        assert_eq!(a[0].2, vec![1.0; 16], "BatchNorm γ starts at 1");
    }

    #[test]
    fn batchnorm_running_variance_is_unbiased_like_pytorch() {
        let device = Default::default();
        let bn = BatchNorm1d::<Autodiff<B>>::init(16, &device);
        // Feature j takes values {0, 2j} over a batch of 4: mean j, biased var j², unbiased 4j²/3.
        let x: Vec<f32> = (0..4)
            .flat_map(|r| (0..16).map(move |j| if r % 2 == 0 { 0.0 } else { 2.0 * j as f32 }))
            .collect();
        let _ = bn.forward(Tensor::from_data(TensorData::new(x, [4, 16]), &device));
        let rv = bn
            .running_var
            .value_sync()
            .inner()
            .into_data()
            .into_vec::<f32>()
            .unwrap();
        let rm = bn
            .running_mean
            .value_sync()
            .inner()
            .into_data()
            .into_vec::<f32>()
            .unwrap();
        for j in 0..16 {
            let jf = j as f32;
            assert!((rm[j] - 0.1 * jf).abs() < 1e-5, "mean {j}: {}", rm[j]);
            assert!(
                (rv[j] - (0.9 + 0.1 * 4.0 * jf * jf / 3.0)).abs() < 1e-3,
                "var {j}: {}",
                rv[j]
            );
        }
    }
}
