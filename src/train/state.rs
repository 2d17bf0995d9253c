//! Everything that changes while training runs - exactly what a checkpoint stores - and one
//! training step on it.

use ndarray::{Array1, Array4, ArrayView4, Axis, Zip};

use super::optim::{clip_grad_norm, AdamW, AdamWHyper};
use super::{learning_rate, update_ema, Checkpoint, Guide, TrainConfig};
use crate::base::rng::Rng;
use crate::data::{DataOrder, Dataset};
use crate::diffusion::{NoiseSchedule, Prediction};
use crate::graph::Graph;
use crate::interp::Executor;
use crate::params::{CheckpointInfo, Params};

pub struct TrainState {
    /// Steps completed.
    pub step: u64,
    pub params: Params,
    pub ema: Params,
    pub opt: AdamW,
    /// Draws timesteps and noise.
    pub rng: Rng,
    pub order: DataOrder,
    /// The autoguidance guide, taken once the run passes its `guide_step`.
    pub guide: Option<Guide>,
}

/// A conditional model's training labels: each is replaced by `null` with probability `drop`,
/// so one model learns both the conditional and the unconditional prediction guidance needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LabelDropout {
    pub null: u32,
    pub drop: f64,
}

/// What one step measured.
pub struct StepStats {
    pub loss: f64,
    pub lr: f64,
    pub grad_norm: f64,
    /// Unweighted MSE of the images whose timestep fell in each quarter of [0, T), noisiest last
    /// (None when the batch had none there): shows which noise levels the model has learned.
    pub quarters: [Option<f64>; 4],
}

/// A step whose loss or gradient norm was not finite; the state was left as it was before it.
pub struct NonFinite {
    pub what: &'static str,
    pub value: f64,
    pub lr: f64,
}

pub(super) fn hyper(cfg: &TrainConfig) -> AdamWHyper {
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
            guide: None,
        }
    }

    pub fn from_checkpoint(ck: Checkpoint, cfg: &TrainConfig, data_len: usize) -> TrainState {
        let info = ck.info;
        let mut opt = AdamW::new(&ck.model, hyper(cfg));
        opt.m = ck.adam_m;
        opt.v = ck.adam_v;
        opt.t = info.step;
        TrainState {
            step: info.step,
            params: ck.model,
            ema: ck.ema,
            opt,
            rng: Rng::from_state(info.rng),
            order: DataOrder::restore(data_len, cfg.seed, info.data_epoch, info.data_position),
            guide: ck.guide,
        }
    }

    pub fn checkpoint(&self, cfg: &TrainConfig, model_hash: &str, class_names: &[String]) -> Checkpoint {
        let (data_epoch, data_position) = self.order.state();
        let info = CheckpointInfo {
            step: self.step,
            rng: self.rng.state(),
            data_epoch,
            data_position,
            model_hash: model_hash.to_string(),
            config: cfg.clone(),
            class_names: class_names.to_vec(),
            guide_step: self.guide.as_ref().map(|g| g.step),
            mdc_version: env!("CARGO_PKG_VERSION").to_string(),
        };
        Checkpoint {
            info,
            model: self.params.clone(),
            ema: self.ema.clone(),
            adam_m: self.opt.m.clone(),
            adam_v: self.opt.v.clone(),
            guide: self.guide.clone(),
        }
    }

    /// One step: a batch at uniform timesteps (with, for a conditional model, its labels, each
    /// replaced by the null label with the dropout's probability), the MSE to the noise or velocity,
    /// backward, clipping, AdamW, EMA. `grads` is scratch space shaped like the parameters.
    pub fn step(
        &mut self,
        exec: &mut Executor,
        grads: &mut Params,
        data: &Dataset,
        schedule: &NoiseSchedule,
        cfg: &TrainConfig,
        dropout: Option<LabelDropout>,
    ) -> Result<StepStats, NonFinite> {
        let step = self.step + 1;
        let lr = learning_rate(cfg, step);
        let Batch { x0, t, noise, labels } = self.draw_batch(data, cfg, dropout);
        let xt = schedule.add_noise(x0.view(), noise.view(), &t);
        let tf = Array1::from_iter(t.iter().map(|&v| v as f32));
        let pred = exec.forward_labeled(&self.params, xt.view(), tf.view(), labels.as_deref(), true);
        let target = training_target(schedule, cfg.prediction, x0.view(), noise, &t);
        let weights = loss_weights(schedule, cfg, &t);
        let (loss, per_image, dy) = mse_and_grad(&pred, &target, &weights);
        let quarters = quarter_means(&t, &per_image, cfg.timesteps);
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
        self.take_guide(cfg);
        Ok(StepStats { loss, lr, grad_norm, quarters })
    }

    /// The next batch from the data order and the generator, exactly as every engine draws it: the
    /// images, uniform timesteps, the noise, then (conditional) the labels after dropout.
    pub fn draw_batch(&mut self, data: &Dataset, cfg: &TrainConfig, dropout: Option<LabelDropout>) -> Batch {
        let batch = self.order.next_batch(cfg.batch);
        let x0 = data.gather(&batch);
        let t: Vec<usize> = (0..cfg.batch).map(|_| self.rng.below(cfg.timesteps)).collect();
        let noise = Array4::from_shape_simple_fn(x0.raw_dim(), || self.rng.normal() as f32);
        // Drawn after the noise, from the same generator: an unconditional run's stream is unchanged
        // and a resumed conditional run drops the same labels.
        let labels: Option<Vec<u32>> = dropout.map(|d| {
            let labels =
                data.gather_labels(&batch).expect("a conditional model's data was checked for labels");
            labels.into_iter().map(|y| if self.rng.uniform() < d.drop { d.null } else { y }).collect()
        });
        Batch { x0, t, noise, labels }
    }

    /// Keeps the EMA weights as the autoguidance guide once the run is at or after (a resumed run
    /// may have been given fewer steps) the guide step.
    pub fn take_guide(&mut self, cfg: &TrainConfig) {
        if self.takes_guide_at(cfg, self.step) {
            self.guide = Some(Guide { step: self.step, weights: self.ema.clone() });
        }
    }

    /// Whether the step after this one takes the guide (its EMA must be on the host then).
    pub fn takes_guide_next(&self, cfg: &TrainConfig) -> bool {
        self.takes_guide_at(cfg, self.step + 1)
    }

    /// Whether step `step` takes the guide: none is kept yet and `step` is at or after the guide step.
    fn takes_guide_at(&self, cfg: &TrainConfig, step: u64) -> bool {
        self.guide.is_none() && cfg.guide_step().is_some_and(|g| step >= g)
    }
}

/// One step's data: clean images, timesteps, noise and, for a conditional model, the labels
/// after dropout.
pub struct Batch {
    pub x0: Array4<f32>,
    pub t: Vec<usize>,
    pub noise: Array4<f32>,
    pub labels: Option<Vec<u32>>,
}

/// Each image's loss weight (min-SNR) at its timestep.
pub fn loss_weights(schedule: &NoiseSchedule, cfg: &TrainConfig, t: &[usize]) -> Vec<f64> {
    t.iter().map(|&ti| loss_weight(schedule, cfg.prediction, ti, cfg.min_snr_gamma)).collect()
}

/// What the network should output for each image: the noise itself, or the velocity mixed from
/// the image and its noise at the image's timestep.
fn training_target(
    schedule: &NoiseSchedule,
    prediction: Prediction,
    x0: ArrayView4<f32>,
    noise: Array4<f32>,
    t: &[usize],
) -> Array4<f32> {
    if prediction == Prediction::Noise {
        return noise;
    }
    let mut target = noise;
    for (i, &ti) in t.iter().enumerate() {
        let ab = schedule.alpha_bar(Some(ti));
        Zip::from(target.index_axis_mut(Axis(0), i))
            .and(x0.index_axis(Axis(0), i))
            .for_each(|v, &x| *v = prediction.target(ab, x as f64, *v as f64) as f32);
    }
    target
}

/// The weight of an image's loss at timestep `t`: 1, or with min-SNR-gamma weighting the x0
/// error weighted by min(SNR, gamma), written for the target `prediction` (for the noise,
/// min(SNR, gamma) / SNR), SNR = alpha_bar / (1 - alpha_bar).
pub fn loss_weight(schedule: &NoiseSchedule, prediction: Prediction, t: usize, min_snr_gamma: f64) -> f64 {
    let ab = schedule.alpha_bar(Some(t));
    prediction.min_snr_weight(ab / (1.0 - ab), min_snr_gamma)
}

/// The weighted mean over images of each image's mean squared error between prediction and
/// target (image i weighted by `weights[i]`), each image's unweighted MSE, and the gradient of the
/// weighted mean w.r.t. the prediction.
pub fn mse_and_grad(
    pred: &Array4<f32>,
    target: &Array4<f32>,
    weights: &[f64],
) -> (f64, Vec<f64>, Array4<f32>) {
    let images = pred.len_of(Axis(0));
    assert_eq!(weights.len(), images, "one weight per image");
    let per_image_len = (pred.len() / images.max(1)) as f64;
    let mut dy = Array4::zeros(pred.raw_dim());
    let mut per_image = Vec::with_capacity(images);
    let mut loss = 0.0f64;
    for (i, &w) in weights.iter().enumerate() {
        let scale = (2.0 * w / pred.len() as f64) as f32;
        let mut sum = 0.0f64;
        Zip::from(dy.index_axis_mut(Axis(0), i))
            .and(pred.index_axis(Axis(0), i))
            .and(target.index_axis(Axis(0), i))
            .for_each(|d, &p, &t| {
                let e = p - t;
                sum += (e as f64) * (e as f64);
                *d = scale * e;
            });
        per_image.push(sum / per_image_len);
        loss += w * sum;
    }
    (loss / pred.len() as f64, per_image, dy)
}

/// The mean of `values` per quarter of the timestep range [0, `t_count`).
pub(super) fn quarter_means(t: &[usize], values: &[f64], t_count: usize) -> [Option<f64>; 4] {
    let mut sums = [(0.0, 0usize); 4];
    for (&ti, &v) in t.iter().zip(values) {
        let q = (ti * 4 / t_count).min(3);
        sums[q].0 += v;
        sums[q].1 += 1;
    }
    sums.map(|(sum, n)| (n > 0).then(|| sum / n as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mse_gradient_matches_finite_differences() {
        let pred = Array4::from_shape_fn([2, 1, 2, 2], |(n, _, y, x)| (n + 2 * y + x) as f32 * 0.3 - 0.5);
        let target = Array4::from_shape_fn([2, 1, 2, 2], |(n, _, y, x)| (n * x + y) as f32 * 0.2);
        let weights = [0.7, 2.5];
        let (loss, per_image, dy) = mse_and_grad(&pred, &target, &weights);
        let want = (0.7 * per_image[0] + 2.5 * per_image[1]) / 2.0;
        assert!((loss - want).abs() < 1e-12, "{loss} vs {want}");
        let h = 1e-3f32;
        for at in [[0, 0, 1, 1], [1, 0, 1, 0]] {
            let mut p2 = pred.clone();
            p2[at] += h;
            let (l2, _, _) = mse_and_grad(&p2, &target, &weights);
            let fd = (l2 - loss) / h as f64;
            assert!((fd - dy[at] as f64).abs() < 2e-3, "{at:?}: {fd} vs {}", dy[at]);
        }
    }

    #[test]
    fn velocity_targets_mix_image_and_noise_at_each_images_timestep() {
        let s = NoiseSchedule::new(crate::diffusion::ScheduleKind::Cosine, 1000);
        let x0 = Array4::from_shape_fn([2, 1, 2, 2], |(i, _, y, x)| 0.5 - (i + y + 2 * x) as f32 * 0.25);
        let noise =
            Array4::from_shape_fn([2, 1, 2, 2], |(i, _, y, x)| (i * 4 + y * 2 + x) as f32 * 0.3 - 1.0);
        let t = [3, 800];
        assert_eq!(training_target(&s, Prediction::Noise, x0.view(), noise.clone(), &t), noise);
        let v = training_target(&s, Prediction::Velocity, x0.view(), noise.clone(), &t);
        for ((i, c, y, x), &got) in v.indexed_iter() {
            let ab = s.alphas_cumprod[t[i]];
            let want = ab.sqrt() * noise[[i, c, y, x]] as f64 - (1.0 - ab).sqrt() * x0[[i, c, y, x]] as f64;
            assert!((got as f64 - want).abs() < 1e-6, "image {i}: {got} vs {want}");
        }
    }

    #[test]
    fn min_snr_weights_cap_the_easy_timesteps_only() {
        let s = NoiseSchedule::new(crate::diffusion::ScheduleKind::Linear, 1000);
        assert_eq!(loss_weight(&s, Prediction::Noise, 10, 0.0), 1.0);
        // SNR falls with t: near t = 0 it is huge and the weight is gamma / SNR; where the SNR is
        // below gamma the weight is 1.
        let snr = |t: usize| s.alphas_cumprod[t] / (1.0 - s.alphas_cumprod[t]);
        assert!((loss_weight(&s, Prediction::Noise, 10, 5.0) - 5.0 / snr(10)).abs() < 1e-12);
        assert_eq!(loss_weight(&s, Prediction::Noise, 900, 5.0), 1.0);
        assert_eq!(
            quarter_means(&[0, 999, 260, 250], &[1.0, 2.0, 3.0, 5.0], 1000),
            [Some(1.0), Some(4.0), None, Some(2.0)]
        );
    }
}
