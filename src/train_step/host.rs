//! What the host computes for each step, exactly as the interpreter computes it on the host
//! (in f64, rounded to f32 where the interpreter rounds): the update's scalars and the batch's
//! per-image coefficients. The graph then only multiplies and adds.

use ndarray::Array2;

use super::StepRecipe;
use crate::diffusion::{NoiseSchedule, Prediction};

/// The `step_scalars` input of step `step` (1-based) at learning rate `lr` and EMA decay
/// `ema_decay`, in [`super::names::SCALAR_ROWS`] order: 1 - lr wd, lr / (1 - b1^t),
/// 1 / sqrt(1 - b2^t), the EMA's decay and 1 - decay (as `AdamW::step` and `update_ema`).
pub fn step_scalars(recipe: &StepRecipe, step: u64, lr: f64, ema_decay: f64) -> [f32; 5] {
    let t = step as f64;
    let bc1 = 1.0 - (recipe.beta1 as f64).powf(t);
    let bc2 = 1.0 - (recipe.beta2 as f64).powf(t);
    let lr32 = lr as f32;
    let d = ema_decay as f32;
    [1.0 - lr32 * recipe.weight_decay, (lr32 as f64 / bc1) as f32, (1.0 / bc2.sqrt()) as f32, d, 1.0 - d]
}

/// The `coefficients` input [5, N] for images at timesteps `t` with loss weights `weights`
/// (min-SNR, one per image), `numel` values per batch (N C H W), in
/// [`super::names::COEFFICIENT_ROWS`] order: x_t's signal and noise factors, the target's
/// signal and noise factors, and the loss gradient's scale 2 w / numel.
pub fn coefficients(
    schedule: &NoiseSchedule,
    prediction: Prediction,
    t: &[usize],
    weights: &[f64],
    numel: usize,
) -> Array2<f32> {
    assert_eq!(t.len(), weights.len(), "one weight per image");
    let mut out = Array2::zeros((5, t.len()));
    for (i, (&ti, &w)) in t.iter().zip(weights).enumerate() {
        let ab = schedule.alpha_bar(Some(ti));
        let (a, s) = (ab.sqrt(), (1.0 - ab).sqrt());
        // Prediction::target is linear in (x0, noise): its factors are its value at the unit vectors.
        let (ts, tn) = (prediction.target(ab, 1.0, 0.0), prediction.target(ab, 0.0, 1.0));
        let col = [a as f32, s as f32, ts as f32, tn as f32, (2.0 * w / numel as f64) as f32];
        for (r, v) in col.into_iter().enumerate() {
            out[[r, i]] = v;
        }
    }
    out
}
