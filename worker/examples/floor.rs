//! The speed floor for jsc-tiny: the same training step (batch gather, BatchNorm with batch
//! statistics, ReLU, Linear, ReLU, cross-entropy, backward, Adam with ε 1e-8) written by hand over f32
//! slices, with no framework. `worker/docs/speed.md` compares burn's step with this one.
//!
//!     cargo run --release -p jetsweep-worker --example floor -- DATA_DIR --batch-size 128
//!
//! Prints one JSON object with the epoch's samples/s (and the final loss, as a sanity check).

use std::path::PathBuf;
use std::time::Instant;

use jetsweep_data::batch::{batch_ranges, epoch_order, gather};
use jetsweep_data::npy;
use jetsweep_data::rng::SplitMix64;

const F: usize = 16;
const C: usize = 5;
const EPS_BN: f32 = 1e-5;
const MOMENTUM: f32 = 0.1;

/// Adam state for one flat parameter vector.
struct Adam {
    m: Vec<f32>,
    v: Vec<f32>,
}

impl Adam {
    fn new(n: usize) -> Self {
        Adam {
            m: vec![0.0; n],
            v: vec![0.0; n],
        }
    }

    fn step(&mut self, p: &mut [f32], g: &[f32], lr: f32, t: i32) {
        let (b1, b2, eps) = (0.9f32, 0.999f32, 1e-8f32);
        let bc1 = 1.0 - b1.powi(t);
        let bc2_sqrt = (1.0 - b2.powi(t)).sqrt();
        for i in 0..p.len() {
            self.m[i] = b1 * self.m[i] + (1.0 - b1) * g[i];
            self.v[i] = b2 * self.v[i] + (1.0 - b2) * g[i] * g[i];
            p[i] -= lr * (self.m[i] / bc1) / (self.v[i].sqrt() / bc2_sqrt + eps);
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(
        args.next()
            .expect("usage: floor DATA_DIR [--batch-size N] [--lr X]"),
    );
    let (mut bs, mut lr) = (128usize, 1e-3f32);
    while let Some(flag) = args.next() {
        let value = args.next().expect("flag value");
        match flag.as_str() {
            "--batch-size" => bs = value.parse().expect("batch size"),
            "--lr" => lr = value.parse().expect("lr"),
            other => panic!("unknown flag {other}"),
        }
    }
    let data = npy::import_dir(&dir).expect("an .npy dataset directory");
    let train = &data.train;
    let n = train.len();

    // Parameters, PyTorch-style init.
    let mut rng = SplitMix64::new(0);
    let bound = 1.0 / (F as f64).sqrt();
    let mut w: Vec<f32> = (0..F * C)
        .map(|_| ((2.0 * rng.next_f64() - 1.0) * bound) as f32)
        .collect(); // [F, C]
    let mut b: Vec<f32> = (0..C)
        .map(|_| ((2.0 * rng.next_f64() - 1.0) * bound) as f32)
        .collect();
    let (mut gamma, mut beta) = (vec![1f32; F], vec![0f32; F]);
    let (mut run_mean, mut run_var) = (vec![0f32; F], vec![1f32; F]);
    let (mut aw, mut ab, mut ag, mut abeta) =
        (Adam::new(F * C), Adam::new(C), Adam::new(F), Adam::new(F));

    let (mut xb, mut yb) = (Vec::new(), Vec::new());
    let mut xhat = vec![0f32; 512 * F];
    let mut act = vec![0f32; 512 * F];
    let mut dz = vec![0f32; 512 * C];
    let (mut gw, mut gb, mut gg, mut gbeta) = (
        vec![0f32; F * C],
        vec![0f32; C],
        vec![0f32; F],
        vec![0f32; F],
    );
    let mut t = 0;
    let mut last_loss = 0.0;

    let order = epoch_order(n, 0, 0);
    let start = Instant::now();
    for range in batch_ranges(n, bs) {
        let rows = &order[range];
        let m = rows.len();
        gather(train, rows, &mut xb, &mut yb);
        if xhat.len() < m * F {
            xhat.resize(m * F, 0.0);
            act.resize(m * F, 0.0);
            dz.resize(m * C, 0.0);
        }
        // BatchNorm with batch statistics.
        let mut mean = [0f32; F];
        let mut var = [0f32; F];
        for r in 0..m {
            for j in 0..F {
                mean[j] += xb[r * F + j];
            }
        }
        mean.iter_mut().for_each(|v| *v /= m as f32);
        for r in 0..m {
            for j in 0..F {
                let d = xb[r * F + j] - mean[j];
                var[j] += d * d;
            }
        }
        var.iter_mut().for_each(|v| *v /= m as f32);
        let inv_std: [f32; F] = std::array::from_fn(|j| 1.0 / (var[j] + EPS_BN).sqrt());
        for j in 0..F {
            run_mean[j] = (1.0 - MOMENTUM) * run_mean[j] + MOMENTUM * mean[j];
            run_var[j] = (1.0 - MOMENTUM) * run_var[j]
                + MOMENTUM * var[j] * m as f32 / (m as f32 - 1.0).max(1.0);
        }
        // Forward to the loss, and the loss gradient at the logits.
        let mut loss = 0f32;
        for r in 0..m {
            for j in 0..F {
                let xh = (xb[r * F + j] - mean[j]) * inv_std[j];
                xhat[r * F + j] = xh;
                act[r * F + j] = (gamma[j] * xh + beta[j]).max(0.0);
            }
            let mut z = [0f32; C];
            z.copy_from_slice(&b);
            for j in 0..F {
                let a = act[r * F + j];
                if a != 0.0 {
                    for c in 0..C {
                        z[c] += a * w[j * C + c];
                    }
                }
            }
            let o: [f32; C] = std::array::from_fn(|c| z[c].max(0.0));
            let mx = o.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v));
            let e: [f32; C] = std::array::from_fn(|c| (o[c] - mx).exp());
            let s: f32 = e.iter().sum();
            let y = yb[r] as usize;
            loss += -(e[y] / s).ln();
            for c in 0..C {
                let p = e[c] / s - if c == y { 1.0 } else { 0.0 };
                dz[r * C + c] = if z[c] > 0.0 { p / m as f32 } else { 0.0 };
            }
        }
        last_loss = loss / m as f32;
        // Backward.
        gw.fill(0.0);
        gb.fill(0.0);
        gg.fill(0.0);
        gbeta.fill(0.0);
        for r in 0..m {
            let d = &dz[r * C..(r + 1) * C];
            for c in 0..C {
                gb[c] += d[c];
            }
            for j in 0..F {
                let a = act[r * F + j];
                if a > 0.0 {
                    let mut da = 0f32;
                    for c in 0..C {
                        gw[j * C + c] += a * d[c];
                        da += d[c] * w[j * C + c];
                    }
                    gg[j] += da * xhat[r * F + j];
                    gbeta[j] += da;
                }
            }
        }
        t += 1;
        aw.step(&mut w, &gw, lr, t);
        ab.step(&mut b, &gb, lr, t);
        ag.step(&mut gamma, &gg, lr, t);
        abeta.step(&mut beta, &gbeta, lr, t);
    }
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({"floor": "hand-written f32", "batch_size": bs, "epoch_seconds": seconds,
            "samples_per_second": n as f64 / seconds, "steps": t, "last_loss": last_loss,
            "running_var0": run_var[0]})
    );
}
