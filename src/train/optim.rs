//! AdamW (Loshchilov & Hutter) as PyTorch implements it: bias-corrected moments and weight decay
//! decoupled from the gradient, plus global gradient-norm clipping.

use rayon::prelude::*;

use crate::params::Params;

/// AdamW hyper-parameters; `Default` is PyTorch's `torch.optim.AdamW` default.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWHyper {
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
}

impl Default for AdamWHyper {
    fn default() -> Self {
        AdamWHyper { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01 }
    }
}

/// Optimizer state: first and second moments shaped like the parameters, and the step count.
/// Public so a training checkpoint can save and restore it exactly.
#[derive(Debug, Clone, PartialEq)]
pub struct AdamW {
    pub hyper: AdamWHyper,
    pub m: Params,
    pub v: Params,
    /// Updates applied so far (the bias correction uses it).
    pub t: u64,
}

/// Elements per parallel task in the update.
const CHUNK: usize = 1 << 14;

impl AdamW {
    pub fn new(params: &Params, hyper: AdamWHyper) -> AdamW {
        AdamW { hyper, m: params.zeros_like(), v: params.zeros_like(), t: 0 }
    }

    /// One update with learning rate `lr`:
    /// p -= lr * wd * p; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
    /// p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps).
    pub fn step(&mut self, params: &mut Params, grads: &Params, lr: f32) {
        assert_eq!(params.tensors.len(), grads.tensors.len(), "adamw: params and grads differ in length");
        self.t += 1;
        let c = self.hyper;
        let t = self.t as f64;
        let bc1 = 1.0 - (c.beta1 as f64).powf(t);
        let bc2 = 1.0 - (c.beta2 as f64).powf(t);
        let step_size = (lr as f64 / bc1) as f32;
        let inv_sqrt_bc2 = (1.0 / bc2.sqrt()) as f32;
        let decay = 1.0 - lr * c.weight_decay;
        let tensors = params
            .tensors
            .iter_mut()
            .zip(&grads.tensors)
            .zip(self.m.tensors.iter_mut().zip(&mut self.v.tensors));
        for ((p, g), (m, v)) in tensors {
            assert_eq!(p.shape(), g.shape(), "adamw: a gradient differs in shape from its parameter");
            let p = p.as_slice_mut().expect("contiguous");
            let g = g.as_slice().expect("contiguous");
            let m = m.as_slice_mut().expect("contiguous");
            let v = v.as_slice_mut().expect("contiguous");
            p.par_chunks_mut(CHUNK)
                .zip(g.par_chunks(CHUNK))
                .zip(m.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK)))
                .for_each(|((p, g), (m, v))| {
                    crate::kernels::with_avx2(|| {
                        for i in 0..p.len() {
                            let gi = g[i];
                            m[i] = c.beta1 * m[i] + (1.0 - c.beta1) * gi;
                            v[i] = c.beta2 * v[i] + (1.0 - c.beta2) * gi * gi;
                            let denom = v[i].sqrt() * inv_sqrt_bc2 + c.eps;
                            p[i] = p[i] * decay - step_size * m[i] / denom;
                        }
                    })
                });
        }
    }
}

/// The squares of every gradient, in f64, in one fixed order: chunk by chunk, each in order,
/// then the chunks' sums in order. (rayon's `sum` adds in an order that depends on which thread
/// steals what, so its last bits, and rarely the f32 norm and the clipping, could differ
/// between two runs of the same step, and a resumed run from an uninterrupted one.)
fn sum_of_squares(grads: &Params) -> f64 {
    let chunk_sums = |t: &ndarray::ArrayD<f32>| {
        let chunks = t.as_slice().expect("contiguous").par_chunks(CHUNK);
        chunks.map(|c| c.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>()).collect::<Vec<f64>>()
    };
    grads.tensors.iter().flat_map(chunk_sums).sum()
}

/// Scales `grads` so their global L2 norm is at most `max_norm` (PyTorch's `clip_grad_norm_`:
/// factor max_norm / (norm + 1e-6) when that is below 1). Returns the norm before clipping.
pub fn clip_grad_norm(grads: &mut Params, max_norm: f32) -> f32 {
    let sq = sum_of_squares(grads);
    let norm = sq.sqrt() as f32;
    let factor = max_norm / (norm + 1e-6);
    if factor < 1.0 {
        for t in &mut grads.tensors {
            t.mapv_inplace(|v| v * factor);
        }
    }
    norm
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{ArrayD, IxDyn};

    fn one(values: &[f32]) -> Params {
        Params {
            names: vec!["w".into()],
            tensors: vec![ArrayD::from_shape_vec(IxDyn(&[values.len()]), values.to_vec()).unwrap()],
        }
    }

    /// Two steps worked by hand in f64 from the formulas (as torch.optim.AdamW computes them).
    #[test]
    fn adamw_matches_reference_formula() {
        let hyper = AdamWHyper { beta1: 0.9, beta2: 0.99, eps: 1e-8, weight_decay: 0.1 };
        let mut p = one(&[1.0, -2.0, 0.5]);
        let grads = [[0.5f32, -1.0, 0.0], [0.25, 2.0, -3.0]];
        let mut opt = AdamW::new(&p, hyper);
        let (mut rp, mut rm, mut rv) = ([1.0f64, -2.0, 0.5], [0f64; 3], [0f64; 3]);
        let lr = 0.01;
        for (step, g) in grads.iter().enumerate() {
            opt.step(&mut p, &one(g), lr as f32);
            let t = (step + 1) as i32;
            for i in 0..3 {
                let gi = g[i] as f64;
                rp[i] *= 1.0 - lr * 0.1;
                rm[i] = 0.9 * rm[i] + 0.1 * gi;
                rv[i] = 0.99 * rv[i] + 0.01 * gi * gi;
                let mhat = rm[i] / (1.0 - 0.9f64.powi(t));
                let vhat = rv[i] / (1.0 - 0.99f64.powi(t));
                rp[i] -= lr * mhat / (vhat.sqrt() + 1e-8);
            }
        }
        assert_eq!(opt.t, 2);
        for (a, b) in p.tensors[0].iter().zip(&rp) {
            assert!((*a as f64 - b).abs() < 1e-6, "{a} vs {b}");
        }
    }

    #[test]
    fn clipping_scales_to_max_norm_and_reports_the_original() {
        let mut g = one(&[3.0, 4.0]);
        let norm = clip_grad_norm(&mut g, 1.0);
        assert!((norm - 5.0).abs() < 1e-6);
        let after: f32 = g.tensors[0].iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((after - 1.0).abs() < 1e-5);
        let mut small = one(&[0.3, 0.4]);
        assert!((clip_grad_norm(&mut small, 1.0) - 0.5).abs() < 1e-6);
        assert_eq!(small.tensors[0].as_slice().unwrap(), &[0.3, 0.4]);
    }

    /// The squares are summed in one fixed order (chunk by chunk, each in order, the chunks in
    /// order), whatever the threads: the same bits on 1 thread and on 7. Values spread over 12
    /// decades make the order show in the sum's last bits.
    #[test]
    fn the_norm_is_summed_in_one_order_on_any_thread_count() {
        let values: Vec<f32> = (0..5 * CHUNK + 123).map(|i| 10f32.powi((i * 7919 % 13) as i32 - 6)).collect();
        let want: f64 =
            values.chunks(CHUNK).map(|c| c.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>()).sum();
        let in_one_pass: f64 = values.iter().map(|&v| (v as f64) * (v as f64)).sum();
        assert_ne!(want.to_bits(), in_one_pass.to_bits(), "the values do not tell the order");
        for threads in [1, 7] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let sum = pool.install(|| sum_of_squares(&one(&values)));
            assert_eq!(sum.to_bits(), want.to_bits(), "{threads} threads");
        }
    }
}
