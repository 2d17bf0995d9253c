//! TEMP (train branch): a stand-in with the agreed API until the interpreter branch's optim.rs
//! is merged; take theirs on merge.

use crate::params::Params;

#[derive(Debug, Clone, Copy)]
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

pub struct AdamW {
    pub hyper: AdamWHyper,
    pub m: Params,
    pub v: Params,
    pub t: u64,
}

impl AdamW {
    pub fn new(params: &Params, hyper: AdamWHyper) -> AdamW {
        AdamW { hyper, m: params.zeros_like(), v: params.zeros_like(), t: 0 }
    }

    pub fn step(&mut self, params: &mut Params, grads: &Params, lr: f32) {
        self.t += 1;
        let h = self.hyper;
        let bc1 = 1.0 - h.beta1.powi(self.t as i32);
        let bc2 = 1.0 - h.beta2.powi(self.t as i32);
        for i in 0..params.tensors.len() {
            let p = params.tensors[i].as_slice_mut().unwrap();
            let g = grads.tensors[i].as_slice().unwrap();
            let m = self.m.tensors[i].as_slice_mut().unwrap();
            let v = self.v.tensors[i].as_slice_mut().unwrap();
            for j in 0..p.len() {
                m[j] = h.beta1 * m[j] + (1.0 - h.beta1) * g[j];
                v[j] = h.beta2 * v[j] + (1.0 - h.beta2) * g[j] * g[j];
                p[j] -= lr * h.weight_decay * p[j];
                p[j] -= lr * (m[j] / bc1) / ((v[j] / bc2).sqrt() + h.eps);
            }
        }
    }
}

pub fn clip_grad_norm(grads: &mut Params, max_norm: f32) -> f32 {
    let norm =
        grads.tensors.iter().flat_map(|t| t.iter()).map(|&g| (g as f64) * (g as f64)).sum::<f64>().sqrt()
            as f32;
    if norm > max_norm {
        let s = max_norm / (norm + 1e-6);
        grads.tensors.iter_mut().for_each(|t| t.mapv_inplace(|g| g * s));
    }
    norm
}
