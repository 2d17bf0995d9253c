//! Everything that changes while training runs - exactly what a checkpoint stores - and one
//! training step on it.

use ndarray::{Array1, Array4, Zip};

use super::{learning_rate, update_ema, Checkpoint, TrainConfig};
use crate::data::{DataOrder, Dataset};
use crate::diffusion::NoiseSchedule;
use crate::graph::Graph;
use crate::interp::Executor;
use crate::optim::{clip_grad_norm, AdamW, AdamWHyper};
use crate::params::Params;
use crate::rng::Rng;

pub struct TrainState {
    /// Steps completed.
    pub step: u64,
    pub params: Params,
    pub ema: Params,
    pub opt: AdamW,
    /// Draws timesteps and noise.
    pub rng: Rng,
    pub order: DataOrder,
}

/// What one step measured.
pub struct StepStats {
    pub loss: f64,
    pub lr: f64,
    pub grad_norm: f64,
}

/// A step whose loss or gradient norm was not finite; the state was left as it was before it.
pub struct NonFinite {
    pub what: &'static str,
    pub value: f64,
    pub lr: f64,
}

fn hyper(cfg: &TrainConfig) -> AdamWHyper {
    AdamWHyper {
        beta1: cfg.adam_beta1 as f32,
        beta2: cfg.adam_beta2 as f32,
        eps: 1e-8,
        weight_decay: cfg.weight_decay as f32,
    }
}

impl TrainState {
    /// Initial weights, data order and noise stream, all from `cfg.seed`.
    pub fn fresh(graph: &Graph, cfg: &TrainConfig, data_len: usize) -> TrainState {
        let params = Params::init(graph, cfg.seed);
        TrainState {
            step: 0,
            ema: params.clone(),
            opt: AdamW::new(&params, hyper(cfg)),
            params,
            rng: Rng::new(cfg.seed ^ 0x5EED_F00D_D1FF_0000_u64),
            order: DataOrder::new(data_len, cfg.seed),
        }
    }

    pub fn from_checkpoint(ck: Checkpoint, cfg: &TrainConfig, data_len: usize) -> TrainState {
        let mut opt = AdamW::new(&ck.model, hyper(cfg));
        opt.m = ck.adam_m;
        opt.v = ck.adam_v;
        opt.t = ck.step;
        TrainState {
            step: ck.step,
            params: ck.model,
            ema: ck.ema,
            opt,
            rng: Rng::from_state(ck.rng),
            order: DataOrder::restore(data_len, cfg.seed, ck.data_epoch, ck.data_position),
        }
    }

    pub fn checkpoint(&self, cfg: &TrainConfig, model_hash: &str) -> Checkpoint {
        let (data_epoch, data_position) = self.order.state();
        Checkpoint {
            step: self.step,
            model: self.params.clone(),
            ema: self.ema.clone(),
            adam_m: self.opt.m.clone(),
            adam_v: self.opt.v.clone(),
            rng: self.rng.state(),
            data_epoch,
            data_position,
            model_hash: model_hash.to_string(),
            config: cfg.clone(),
        }
    }

    /// One step: a batch at uniform timesteps, noise-prediction MSE, backward, clipping, AdamW,
    /// EMA. `grads` is scratch space shaped like the parameters.
    pub fn step(
        &mut self,
        exec: &mut Executor,
        grads: &mut Params,
        data: &Dataset,
        schedule: &NoiseSchedule,
        cfg: &TrainConfig,
    ) -> Result<StepStats, NonFinite> {
        let step = self.step + 1;
        let lr = learning_rate(cfg, step);
        let x0 = data.gather(&self.order.next_batch(cfg.batch));
        let t: Vec<usize> = (0..cfg.batch).map(|_| self.rng.below(cfg.timesteps)).collect();
        let noise = Array4::from_shape_simple_fn(x0.raw_dim(), || self.rng.normal() as f32);
        let xt = schedule.add_noise(x0.view(), noise.view(), &t);
        let tf = Array1::from_iter(t.iter().map(|&v| v as f32));
        let pred = exec.forward_train(&self.params, xt.view(), tf.view());
        let (loss, dy) = mse_and_grad(&pred, &noise);
        if !loss.is_finite() {
            return Err(NonFinite { what: "loss", value: loss, lr });
        }
        exec.backward(&self.params, dy.view(), grads);
        let max_norm = if cfg.clip_grad > 0.0 { cfg.clip_grad as f32 } else { f32::INFINITY };
        let grad_norm = clip_grad_norm(grads, max_norm) as f64;
        if !grad_norm.is_finite() {
            return Err(NonFinite { what: "gradient norm", value: grad_norm, lr });
        }
        self.opt.step(&mut self.params, grads, lr as f32);
        update_ema(&mut self.ema, &self.params, cfg.ema_decay, step);
        self.step = step;
        Ok(StepStats { loss, lr, grad_norm })
    }
}

/// Mean squared error between predicted and true noise, and its gradient w.r.t. the prediction.
pub fn mse_and_grad(pred: &Array4<f32>, target: &Array4<f32>) -> (f64, Array4<f32>) {
    let n = pred.len() as f64;
    let mut sum = 0.0f64;
    let mut dy = Array4::zeros(pred.raw_dim());
    let scale = (2.0 / n) as f32;
    Zip::from(&mut dy).and(pred).and(target).for_each(|d, &p, &t| {
        let e = p - t;
        sum += (e as f64) * (e as f64);
        *d = scale * e;
    });
    (sum / n, dy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mse_gradient_matches_finite_differences() {
        let pred = Array4::from_shape_fn([2, 1, 2, 2], |(n, _, y, x)| (n + 2 * y + x) as f32 * 0.3 - 0.5);
        let target = Array4::from_shape_fn([2, 1, 2, 2], |(n, _, y, x)| (n * x + y) as f32 * 0.2);
        let (loss, dy) = mse_and_grad(&pred, &target);
        let mut p2 = pred.clone();
        let h = 1e-3f32;
        p2[[1, 0, 1, 0]] += h;
        let (l2, _) = mse_and_grad(&p2, &target);
        let fd = (l2 - loss) / h as f64;
        assert!((fd - dy[[1, 0, 1, 0]] as f64).abs() < 1e-3, "{fd} vs {}", dy[[1, 0, 1, 0]]);
    }
}
