//! Reverse-process samplers: DDPM ancestral sampling over every step, DDIM over a subset of
//! steps with a stochasticity knob `eta` (0: deterministic, 1: DDPM-like), and DPM-Solver++(2M),
//! a deterministic second-order multistep solver of the probability-flow ODE.

use anyhow::{bail, Context};
use ndarray::{s, Array4, Axis, Zip};

use super::{Denoiser, GuidanceParts, NoiseSchedule, Prediction};
use crate::base::rng::Rng;

/// Which reverse process to run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampler {
    /// Ho et al.: every one of the T steps, posterior variance beta~_t.
    Ddpm,
    /// Song et al.: `steps` evenly spaced steps ending at t = T-1; `eta` scales the noise.
    Ddim { steps: usize, eta: f32 },
    /// Lu et al. 2022, DPM-Solver++(2M): the same timesteps as DDIM; each step extrapolates the
    /// predicted clean image linearly in log-SNR from the last two predictions. The first step
    /// (no history yet) and the last (to the clean image, where log-SNR is infinite) are first
    /// order, i.e. DDIM steps with eta 0.
    DpmSolver2M { steps: usize },
}

impl std::fmt::Display for Sampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Sampler::Ddpm => write!(f, "ddpm (all steps)"),
            Sampler::Ddim { steps, eta } => write!(f, "ddim ({steps} steps, eta {eta})"),
            Sampler::DpmSolver2M { steps } => write!(f, "dpm-solver++(2m) ({steps} steps)"),
        }
    }
}

/// A sampler by name, without its step count (what the training recipe stores).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SamplerKind {
    Ddpm,
    Ddim,
    Dpmpp2m,
}

impl SamplerKind {
    pub const NAMES: &'static str = "\"ddpm\", \"ddim\" or \"dpmpp2m\"";

    pub fn name(self) -> &'static str {
        match self {
            SamplerKind::Ddpm => "ddpm",
            SamplerKind::Ddim => "ddim",
            SamplerKind::Dpmpp2m => "dpmpp2m",
        }
    }

    /// The sampler with `steps` steps (DDPM always visits every timestep) and DDIM's `eta`.
    pub fn with_steps(self, steps: usize, eta: f32) -> Sampler {
        match self {
            SamplerKind::Ddpm => Sampler::Ddpm,
            SamplerKind::Ddim => Sampler::Ddim { steps, eta },
            SamplerKind::Dpmpp2m => Sampler::DpmSolver2M { steps },
        }
    }
}

#[derive(Debug, Clone)]
pub struct SampleOptions {
    pub count: usize,
    /// Images per denoiser call; results do not depend on it.
    pub batch: usize,
    pub sampler: Sampler,
    /// Clamp each predicted x_0 to [-1, 1] (the data range), as the DDPM reference code does;
    /// it keeps short-trained models from drifting out of range.
    pub clip_x0: bool,
    /// What the denoiser's output is (the noise, or the velocity).
    pub prediction: Prediction,
    pub seed: u64,
    /// Class-conditional sampling with classifier-free guidance (None: unconditional model, or a
    /// conditional one sampled with the null label throughout).
    pub guidance: Option<ClassGuidance>,
}

/// Which class each image is drawn from, and how strongly: classifier-free guidance (Ho &
/// Salimans 2022), composed with autoguidance when the denoiser has a guide.
///
/// The guided prediction is `labelled + (S - 1) (model_labelled - model_null)` ([`GuidanceParts`]):
/// the prediction S = 1 samples with, pushed along the model's own class direction. For a plain
/// model that is the usual eps(null) + S (eps(label) - eps(null)). For an autoguided one
/// (A = guide + w (model - guide)) it adds the two guidance terms instead of guiding the guided
/// model: A(label) + (S - 1) (model(label) - model(null)). Guiding A(label) against A(null)
/// would multiply the two: at S = 2 and w = 3 that is 6 model(label) - 4 guide(label) -
/// 3 model(null) + 2 guide(null), and one training run drew only 89 % of its 5s right (98 % with
/// the sum at S = 6). The sum also leaves the guide off the null half: three network passes of
/// N per step where the product needs four (docs/experiments/conditional.md, "Adding the two guidances").
#[derive(Debug, Clone, PartialEq)]
pub struct ClassGuidance {
    /// One label per image (`count` of them); `null` asks for no class.
    pub labels: Vec<u32>,
    /// The model's "no label" index (its number of classes).
    pub null: u32,
    /// S: 1 is the plain conditional model, 0 the unconditional one (every label null), larger
    /// pushes the samples harder toward their class.
    pub scale: f32,
}

impl ClassGuidance {
    /// `per_class` images of each class in `classes`, class after class (a grid with one row per
    /// class), for a model whose null label is `null`.
    pub fn rows(classes: &[u32], per_class: usize, null: u32, scale: f32) -> ClassGuidance {
        let labels = classes.iter().flat_map(|&y| std::iter::repeat_n(y, per_class)).collect();
        ClassGuidance { labels, null, scale }
    }

    /// The guided noise estimate for a chunk whose labels are `labels`. The model's conditional
    /// and null halves run as ONE batch of 2N; S = 1, S = 0 and an all-null chunk need only the
    /// denoiser's own prediction.
    pub fn predict(
        &self,
        denoiser: &mut dyn Denoiser,
        x: &Array4<f32>,
        t: &[f32],
        labels: &[u32],
    ) -> anyhow::Result<Array4<f32>> {
        if self.scale == 0.0 || labels.iter().all(|&y| y == self.null) {
            return denoiser.predict_noise(x, t, Some(&vec![self.null; labels.len()]));
        }
        if self.scale == 1.0 {
            return denoiser.predict_noise(x, t, Some(labels));
        }
        let parts = denoiser.guidance_parts(x, t, labels, self.null)?;
        let GuidanceParts { labelled: mut out, model_labelled, model_null } = parts;
        for part in [&model_labelled, &model_null] {
            if part.shape() != out.shape() {
                bail!(
                    "the denoiser's guidance parts differ in shape: {:?} and {:?}",
                    part.shape(),
                    out.shape()
                );
            }
        }
        let push = self.scale - 1.0;
        Zip::from(&mut out).and(&model_labelled).and(&model_null).for_each(|o, &c, &u| *o += push * (c - u));
        Ok(out)
    }
}

/// The timesteps a sampler visits, from noisiest to cleanest.
fn timesteps(sampler: Sampler, t_count: usize) -> anyhow::Result<Vec<usize>> {
    let steps = match sampler {
        Sampler::Ddpm => return Ok((0..t_count).rev().collect()),
        Sampler::Ddim { steps, eta } => {
            if !(0.0..=1.0).contains(&eta) {
                bail!("DDIM eta must be between 0 and 1, found {eta}");
            }
            steps
        }
        Sampler::DpmSolver2M { steps } => steps,
    };
    if steps == 0 || steps > t_count {
        bail!("{sampler} needs between 1 and {t_count} steps (the schedule's T), found {steps}");
    }
    // Evenly spaced and ending at T-1 ("trailing" spacing), so the first step starts from the
    // pure noise the sampler is given; the last step goes from T/steps - 1 to alpha_bar = 1.
    // ("Leading" spacing, 0, T/steps, ..., would start at T - T/steps from noise meant for T-1.)
    Ok((0..steps).rev().map(|i| ((i + 1) * t_count).div_ceil(steps) - 1).collect())
}

/// Draws `opts.count` images of shape `image` = [C, H, W]. Image i's noise comes from its own
/// generator seeded by (seed, i), so results do not depend on the batch size. `progress` is called
/// after every denoiser call with (calls done, calls in total).
pub fn sample(
    denoiser: &mut dyn Denoiser,
    schedule: &NoiseSchedule,
    image: [usize; 3],
    opts: &SampleOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> anyhow::Result<Array4<f32>> {
    let ts = timesteps(opts.sampler, schedule.timesteps())?;
    if let Some(g) = &opts.guidance {
        if g.labels.len() != opts.count {
            bail!("{} class labels for {} images", g.labels.len(), opts.count);
        }
        if let Some(&bad) = g.labels.iter().find(|&&y| y > g.null) {
            bail!("class {bad} does not exist: the model knows classes 0 to {}", g.null.saturating_sub(1));
        }
    }
    let batch = opts.batch.max(1);
    let [c, h, w] = image;
    let mut out = Array4::zeros([opts.count, c, h, w]);
    let chunks: Vec<(usize, usize)> =
        (0..opts.count).step_by(batch).map(|s| (s, (s + batch).min(opts.count))).collect();
    let total_calls = chunks.len() * ts.len();
    let mut calls = 0;
    for (start, end) in chunks {
        let mut rngs: Vec<Rng> = (start..end)
            .map(|i| Rng::new(opts.seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)))
            .collect();
        let mut x = draw_noise(&mut rngs, [c, h, w]);
        let mut history = None;
        for (k, &t) in ts.iter().enumerate() {
            let prev = ts.get(k + 1).copied();
            let tv = vec![t as f32; end - start];
            let out = match &opts.guidance {
                None => denoiser.predict_noise(&x, &tv, None),
                Some(g) => g.predict(denoiser, &x, &tv, &g.labels[start..end]),
            }
            .with_context(|| format!("denoiser failed at timestep {t}"))?;
            if out.shape() != x.shape() {
                bail!("the denoiser returned shape {:?} for input {:?}", out.shape(), x.shape());
            }
            let z = if step_noise_scale(opts.sampler, schedule, t, prev) > 0.0 {
                Some(draw_noise(&mut rngs, [c, h, w]))
            } else {
                None
            };
            let (x0, eps) = predictions(schedule, opts.prediction, t, &x, &out, opts.clip_x0);
            x = match opts.sampler {
                Sampler::DpmSolver2M { .. } => dpm_solver_step(schedule, t, prev, &x, x0, &mut history),
                _ => step(opts.sampler, schedule, t, prev, &x, &x0, &eps, z.as_ref()),
            };
            calls += 1;
            progress(calls, total_calls);
        }
        out.slice_mut(s![start..end, .., .., ..]).assign(&x);
    }
    Ok(out)
}

/// Noise for each image from that image's own generator.
fn draw_noise(rngs: &mut [Rng], image: [usize; 3]) -> Array4<f32> {
    let [c, h, w] = image;
    let mut x = Array4::zeros([rngs.len(), c, h, w]);
    for (mut img, rng) in x.axis_iter_mut(Axis(0)).zip(rngs.iter_mut()) {
        img.iter_mut().for_each(|v| *v = rng.normal() as f32);
    }
    x
}

/// Standard deviation of the fresh noise added when going from `t` to `prev`.
fn step_noise_scale(sampler: Sampler, s: &NoiseSchedule, t: usize, prev: Option<usize>) -> f64 {
    let (ab, ab_prev) = (s.alpha_bar(Some(t)), s.alpha_bar(prev));
    match sampler {
        // Posterior variance beta~_t = beta_t (1 - abar_{t-1}) / (1 - abar_t); 0 at t = 0.
        Sampler::Ddpm => (s.betas[t] * (1.0 - ab_prev) / (1.0 - ab)).sqrt(),
        Sampler::Ddim { eta, .. } => {
            eta as f64 * ((1.0 - ab_prev) / (1.0 - ab)).sqrt() * (1.0 - ab / ab_prev).max(0.0).sqrt()
        }
        Sampler::DpmSolver2M { .. } => 0.0,
    }
}

/// The clean image x0_hat and the noise estimate eps_hat from the denoiser's `output` (see
/// [`Prediction::estimates`]), with x0_hat clamped to [-1, 1] when asked and the noise estimate
/// made consistent with it.
fn predictions(
    s: &NoiseSchedule,
    prediction: Prediction,
    t: usize,
    x: &Array4<f32>,
    output: &Array4<f32>,
    clip_x0: bool,
) -> (Array4<f32>, Array4<f32>) {
    let ab = s.alpha_bar(Some(t));
    let (sqrt_ab, sqrt_1m_ab) = (ab.sqrt(), (1.0 - ab).sqrt());
    let mut x0 = Array4::zeros(x.raw_dim());
    let mut eps = Array4::zeros(x.raw_dim());
    Zip::from(&mut x0).and(&mut eps).and(x).and(output).for_each(|x0, e, &xv, &ov| {
        let xv = xv as f64;
        let (mut x0v, mut ev) = prediction.estimates(ab, xv, ov as f64);
        if clip_x0 {
            x0v = x0v.clamp(-1.0, 1.0);
            ev = (xv - sqrt_ab * x0v) / sqrt_1m_ab;
        }
        *x0 = x0v as f32;
        *e = ev as f32;
    });
    (x0, eps)
}

/// One DDPM or DDIM step from x_t to x_prev given the predicted clean image and noise and fresh
/// noise `z`.
#[allow(clippy::too_many_arguments)]
fn step(
    sampler: Sampler,
    s: &NoiseSchedule,
    t: usize,
    prev: Option<usize>,
    x: &Array4<f32>,
    x0: &Array4<f32>,
    eps: &Array4<f32>,
    z: Option<&Array4<f32>>,
) -> Array4<f32> {
    let (ab, ab_prev) = (s.alpha_bar(Some(t)), s.alpha_bar(prev));
    let sigma = step_noise_scale(sampler, s, t, prev);
    // Coefficients of x_prev = cx0 * x0_hat + c_other * (x_t or eps_hat) + sigma * z, in f64.
    let (cx0, cother) = match sampler {
        Sampler::Ddpm => {
            let alpha = 1.0 - s.betas[t];
            (s.betas[t] * ab_prev.sqrt() / (1.0 - ab), (1.0 - ab_prev) * alpha.sqrt() / (1.0 - ab))
        }
        _ => (ab_prev.sqrt(), (1.0 - ab_prev - sigma * sigma).max(0.0).sqrt()),
    };
    let other = if matches!(sampler, Sampler::Ddpm) { x } else { eps };
    let mut out = Array4::zeros(x.raw_dim());
    Zip::from(&mut out).and(x0).and(other).for_each(|o, &x0, &ov| {
        *o = (cx0 * x0 as f64 + cother * ov as f64) as f32;
    });
    if let Some(z) = z {
        Zip::from(&mut out).and(z).for_each(|o, &zv| *o += (sigma * zv as f64) as f32);
    }
    out
}

/// Half the log signal-to-noise ratio, lambda = log(alpha / sigma), at alpha_bar `ab`.
fn half_log_snr(ab: f64) -> f64 {
    0.5 * (ab / (1.0 - ab)).ln()
}

/// One DPM-Solver++(2M) step from `t` to `prev` given the (clamped) predicted clean image `x0`.
/// `history` holds the previous step's x0 and lambda and is updated. With h = lambda_prev -
/// lambda_t, x_prev = (sigma_prev / sigma_t) x_t + alpha_prev (1 - e^-h) D, where D is x0 (first
/// order) or x0 + (x0 - x0_old) / (2 r), r = h_old / h (the derivative in lambda, from the last
/// two predictions).
fn dpm_solver_step(
    s: &NoiseSchedule,
    t: usize,
    prev: Option<usize>,
    x: &Array4<f32>,
    x0: Array4<f32>,
    history: &mut Option<(Array4<f32>, f64)>,
) -> Array4<f32> {
    let ab = s.alpha_bar(Some(t));
    let lambda = half_log_snr(ab);
    let Some(prev) = prev else {
        // The last step lands on alpha_bar = 1, sigma = 0: x_prev is the predicted clean image.
        return x0;
    };
    let ab_prev = s.alpha_bar(Some(prev));
    let h = half_log_snr(ab_prev) - lambda;
    let c_x = ((1.0 - ab_prev) / (1.0 - ab)).sqrt();
    let c_d = ab_prev.sqrt() * -(-h).exp_m1();
    let mut out = Array4::zeros(x.raw_dim());
    match history.as_ref() {
        None => Zip::from(&mut out).and(x).and(&x0).for_each(|o, &xv, &d| {
            *o = (c_x * xv as f64 + c_d * d as f64) as f32;
        }),
        Some((x0_old, lambda_old)) => {
            let k = h / (2.0 * (lambda - lambda_old));
            Zip::from(&mut out).and(x).and(&x0).and(x0_old).for_each(|o, &xv, &d, &d_old| {
                let d = d as f64 + k * (d as f64 - d_old as f64);
                *o = (c_x * xv as f64 + c_d * d) as f32;
            });
        }
    }
    *history = Some((x0, lambda));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diffusion::ScheduleKind;

    #[test]
    fn ddim_timesteps_are_even_and_end_at_t_minus_one() {
        assert_eq!(timesteps(Sampler::Ddim { steps: 4, eta: 0.0 }, 1000).unwrap(), vec![999, 749, 499, 249]);
        assert_eq!(timesteps(Sampler::Ddim { steps: 3, eta: 0.0 }, 10).unwrap(), vec![9, 6, 3]);
        let all = timesteps(Sampler::Ddim { steps: 10, eta: 0.0 }, 10).unwrap();
        assert_eq!(all, timesteps(Sampler::Ddpm, 10).unwrap());
        assert!(timesteps(Sampler::Ddim { steps: 0, eta: 0.0 }, 10).is_err());
        assert!(timesteps(Sampler::Ddim { steps: 11, eta: 0.0 }, 10).is_err());
        assert!(timesteps(Sampler::Ddim { steps: 5, eta: 1.5 }, 10).is_err());
        let dpm = timesteps(Sampler::DpmSolver2M { steps: 4 }, 1000).unwrap();
        assert_eq!(dpm, vec![999, 749, 499, 249]);
        assert!(timesteps(Sampler::DpmSolver2M { steps: 0 }, 10).is_err());
        assert!(timesteps(Sampler::DpmSolver2M { steps: 11 }, 10).is_err());
    }

    #[test]
    fn ddim_with_eta_one_and_every_step_adds_ddpm_noise() {
        let s = NoiseSchedule::new(ScheduleKind::Linear, 1000);
        for t in [1usize, 10, 500, 999] {
            let a = step_noise_scale(Sampler::Ddpm, &s, t, Some(t - 1));
            let b = step_noise_scale(Sampler::Ddim { steps: 1000, eta: 1.0 }, &s, t, Some(t - 1));
            assert!((a - b).abs() < 1e-12, "t={t}: {a} vs {b}");
        }
        assert_eq!(step_noise_scale(Sampler::Ddpm, &s, 0, None), 0.0);
    }
}
