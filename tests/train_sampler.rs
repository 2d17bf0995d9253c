//! Samplers against oracle denoisers: when the data distribution is known, the optimal noise
//! prediction has a closed form, and a correct sampler must reproduce the data distribution.

use mdc::diffusion::{sample, Denoiser, NoiseSchedule, Prediction, SampleOptions, Sampler, ScheduleKind};
use ndarray::{Array4, Axis};

/// Data: every pixel independent N(mu, sd^2). Then E[eps | x_t] = sqrt(1-a) (x_t - sqrt(a) mu) / (a sd^2 + 1 - a).
struct GaussianOracle {
    schedule: NoiseSchedule,
    mu: f64,
    sd: f64,
}

impl Denoiser for GaussianOracle {
    fn predict_noise(
        &mut self,
        x: &Array4<f32>,
        t: &[f32],
        _labels: Option<&[u32]>,
    ) -> anyhow::Result<Array4<f32>> {
        let mut out = x.clone();
        for (mut img, &ti) in out.axis_iter_mut(Axis(0)).zip(t) {
            let a = self.schedule.alphas_cumprod[ti as usize];
            let k = (1.0 - a).sqrt() / (a * self.sd * self.sd + 1.0 - a);
            img.mapv_inplace(|v| (k * (v as f64 - a.sqrt() * self.mu)) as f32);
        }
        Ok(out)
    }
}

/// Data: one of two fixed images with equal probability. E[x0 | x_t] is their posterior mix.
struct TwoImageOracle {
    schedule: NoiseSchedule,
    images: [Vec<f64>; 2],
}

impl Denoiser for TwoImageOracle {
    fn predict_noise(
        &mut self,
        x: &Array4<f32>,
        t: &[f32],
        _labels: Option<&[u32]>,
    ) -> anyhow::Result<Array4<f32>> {
        let mut out = x.clone();
        for (mut img, &ti) in out.axis_iter_mut(Axis(0)).zip(t) {
            let a = self.schedule.alphas_cumprod[ti as usize];
            let xs: Vec<f64> = img.iter().map(|&v| v as f64).collect();
            let logw: Vec<f64> = self
                .images
                .iter()
                .map(|im| {
                    -xs.iter().zip(im).map(|(x, m)| (x - a.sqrt() * m).powi(2)).sum::<f64>()
                        / (2.0 * (1.0 - a))
                })
                .collect();
            let mx = logw[0].max(logw[1]);
            let w0 = (logw[0] - mx).exp() / ((logw[0] - mx).exp() + (logw[1] - mx).exp());
            for (i, v) in img.iter_mut().enumerate() {
                let mean = w0 * self.images[0][i] + (1.0 - w0) * self.images[1][i];
                *v = ((xs[i] - a.sqrt() * mean) / (1.0 - a).sqrt()) as f32;
            }
        }
        Ok(out)
    }
}

/// The same oracle as a velocity model: v = sqrt(a) eps - sqrt(1 - a) x0 with x0 the clean
/// image its noise estimate implies, which simplifies to v = (eps - sqrt(1 - a) x_t) / sqrt(a).
struct AsVelocity<D> {
    noise: D,
    schedule: NoiseSchedule,
}

impl<D: Denoiser> Denoiser for AsVelocity<D> {
    fn predict_noise(
        &mut self,
        x: &Array4<f32>,
        t: &[f32],
        labels: Option<&[u32]>,
    ) -> anyhow::Result<Array4<f32>> {
        let mut out = self.noise.predict_noise(x, t, labels)?;
        for ((mut img, xi), &ti) in out.axis_iter_mut(Axis(0)).zip(x.axis_iter(Axis(0))).zip(t) {
            let a = self.schedule.alphas_cumprod[ti as usize];
            img.zip_mut_with(&xi, |e, &xv| {
                *e = ((*e as f64 - (1.0 - a).sqrt() * xv as f64) / a.sqrt()) as f32;
            });
        }
        Ok(out)
    }
}

/// The oracle as it predicts `prediction`.
fn oracle_for<D: Denoiser + 'static>(
    noise: D,
    schedule: &NoiseSchedule,
    prediction: Prediction,
) -> Box<dyn Denoiser> {
    match prediction {
        Prediction::Noise => Box::new(noise),
        Prediction::Velocity => Box::new(AsVelocity { noise, schedule: schedule.clone() }),
    }
}

const PREDICTIONS: [Prediction; 2] = [Prediction::Noise, Prediction::Velocity];

fn opts(sampler: Sampler, count: usize, batch: usize, clip: bool) -> SampleOptions {
    SampleOptions {
        count,
        batch,
        sampler,
        clip_x0: clip,
        prediction: Prediction::Noise,
        seed: 11,
        guidance: None,
    }
}

fn moments(x: &Array4<f32>) -> (f64, f64) {
    let n = x.len() as f64;
    let mean = x.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

#[test]
fn every_sampler_reproduces_a_gaussian_data_distribution() {
    for (kind, prediction) in
        [ScheduleKind::Linear, ScheduleKind::Cosine].into_iter().flat_map(|k| PREDICTIONS.map(|p| (k, p)))
    {
        let schedule = NoiseSchedule::new(kind, 1000);
        let gaussian = GaussianOracle { schedule: schedule.clone(), mu: 0.3, sd: 0.5 };
        let mut oracle = oracle_for(gaussian, &schedule, prediction);
        for sampler in [
            Sampler::Ddpm,
            Sampler::Ddim { steps: 250, eta: 0.0 },
            Sampler::Ddim { steps: 250, eta: 1.0 },
            Sampler::DpmSolver2M { steps: 250 },
        ] {
            // Few-step DDIM shrinks the spread (a discretisation error that vanishes as steps grow),
            // so this checks the samplers near their continuous limit.
            let opts = SampleOptions { prediction, ..opts(sampler, 128, 64, false) };
            let x = sample(oracle.as_mut(), &schedule, [1, 8, 8], &opts, &mut |_, _| {}).unwrap();
            let (mean, sd) = moments(&x);
            assert!((mean - 0.3).abs() < 0.03, "{kind} {prediction} {sampler}: mean {mean}");
            assert!((sd - 0.5).abs() < 0.03, "{kind} {prediction} {sampler}: sd {sd}");
        }
    }
}

#[test]
fn samplers_land_on_one_of_two_training_images_not_a_blend() {
    let schedule = NoiseSchedule::new(ScheduleKind::Linear, 1000);
    let a: Vec<f64> = (0..16).map(|i| if i % 2 == 0 { 0.8 } else { -0.8 }).collect();
    let b: Vec<f64> = (0..16).map(|i| if i < 8 { -0.6 } else { 0.6 }).collect();
    for (prediction, sampler) in PREDICTIONS.into_iter().flat_map(|p| {
        [
            Sampler::Ddpm,
            Sampler::Ddim { steps: 100, eta: 0.0 },
            Sampler::Ddim { steps: 20, eta: 1.0 },
            Sampler::DpmSolver2M { steps: 20 },
        ]
        .map(|s| (p, s))
    }) {
        let two = TwoImageOracle { schedule: schedule.clone(), images: [a.clone(), b.clone()] };
        let mut oracle = oracle_for(two, &schedule, prediction);
        let opts = SampleOptions { prediction, ..opts(sampler, 40, 16, true) };
        let x = sample(oracle.as_mut(), &schedule, [1, 4, 4], &opts, &mut |_, _| {}).unwrap();
        let mut hits = [0, 0];
        for img in x.axis_iter(Axis(0)) {
            let d = |m: &[f64]| img.iter().zip(m).map(|(&v, m)| (v as f64 - m).abs()).fold(0.0, f64::max);
            let (da, db) = (d(&a), d(&b));
            assert!(da.min(db) < 0.02, "{prediction} {sampler}: image is {da} from a and {db} from b");
            hits[if da < db { 0 } else { 1 }] += 1;
        }
        assert!(
            hits[0] >= 8 && hits[1] >= 8,
            "{prediction} {sampler}: both modes should appear, got {hits:?}"
        );
    }
}

#[test]
fn results_depend_on_the_seed_but_not_the_batch_size() {
    let schedule = NoiseSchedule::new(ScheduleKind::Linear, 100);
    let mut oracle = GaussianOracle { schedule: schedule.clone(), mu: 0.0, sd: 0.5 };
    let s = Sampler::Ddim { steps: 10, eta: 1.0 };
    let x1 = sample(&mut oracle, &schedule, [2, 3, 3], &opts(s, 5, 5, true), &mut |_, _| {}).unwrap();
    let x2 = sample(&mut oracle, &schedule, [2, 3, 3], &opts(s, 5, 2, true), &mut |_, _| {}).unwrap();
    assert_eq!(x1, x2);
    let mut other = opts(s, 5, 5, true);
    other.seed = 12;
    let x3 = sample(&mut oracle, &schedule, [2, 3, 3], &other, &mut |_, _| {}).unwrap();
    assert_ne!(x1, x3);
    let mut calls = Vec::new();
    sample(&mut oracle, &schedule, [2, 3, 3], &opts(s, 5, 2, true), &mut |d, n| calls.push((d, n))).unwrap();
    assert_eq!(calls.len(), 30);
    assert_eq!(calls.last(), Some(&(30, 30)));
}

/// Remembers the first input it is given (the sampler's starting noise x_T).
struct Recording<D> {
    inner: D,
    first: Option<Array4<f32>>,
}

impl<D: Denoiser> Denoiser for Recording<D> {
    fn predict_noise(
        &mut self,
        x: &Array4<f32>,
        t: &[f32],
        y: Option<&[u32]>,
    ) -> anyhow::Result<Array4<f32>> {
        self.first.get_or_insert_with(|| x.clone());
        self.inner.predict_noise(x, t, y)
    }
}

/// Largest error of deterministic sampling against the exact probability-flow ODE for Gaussian
/// data. Along the ODE, z = (x_t - a mu) / sqrt(a^2 sd^2 + 1 - a) stays constant, so the exact
/// state at the last visited timestep t_l is known; a solver's last step lands on the denoiser's
/// x0 prediction there, mu + sqrt(a_l) sd^2 z / sqrt(a_l sd^2 + 1 - a_l), which is the reference.
fn ode_error(sampler: Sampler, steps: usize, schedule: &NoiseSchedule) -> f64 {
    let (mu, sd) = (0.3, 0.5);
    let oracle = GaussianOracle { schedule: schedule.clone(), mu, sd };
    let mut den = Recording { inner: oracle, first: None };
    let x = sample(&mut den, schedule, [1, 4, 4], &opts(sampler, 8, 8, false), &mut |_, _| {}).unwrap();
    let t_count = schedule.timesteps();
    let t_last = t_count.div_ceil(steps) - 1;
    let spread = |a: f64| (a * sd * sd + 1.0 - a).sqrt();
    let (a_first, a_last) = (schedule.alphas_cumprod[t_count - 1], schedule.alphas_cumprod[t_last]);
    let start = den.first.unwrap();
    x.iter()
        .zip(start.iter())
        .map(|(&got, &x_t)| {
            let z = (x_t as f64 - a_first.sqrt() * mu) / spread(a_first);
            let want = mu + a_last.sqrt() * sd * sd * z / spread(a_last);
            (got as f64 - want).abs()
        })
        .fold(0.0, f64::max)
}

#[test]
fn dpm_solver_converges_at_second_order_and_beats_ddim() {
    for kind in [ScheduleKind::Linear, ScheduleKind::Cosine] {
        let schedule = NoiseSchedule::new(kind, 1000);
        let ddim = |n| ode_error(Sampler::Ddim { steps: n, eta: 0.0 }, n, &schedule);
        let dpm = |n| ode_error(Sampler::DpmSolver2M { steps: n }, n, &schedule);
        // The asymptotic regime: at few steps the huge first step in log-SNR (from pure noise)
        // dominates the error and the ratios wander.
        let (d1, d2, d4) = (ddim(100), ddim(200), ddim(400));
        let (p1, p2, p4) = (dpm(100), dpm(200), dpm(400));
        // Halving the step size divides a first-order error by about 2 and a second-order one by
        // about 4 (measured: 1.9 and 3.4).
        for (a, b) in [(d1, d2), (d2, d4)] {
            assert!(a / b > 1.6 && a / b < 2.4, "{kind} ddim, not first order: {d1} {d2} {d4}");
        }
        for (a, b) in [(p1, p2), (p2, p4)] {
            assert!(a / b > 2.8, "{kind} dpm++, not second order: {p1} {p2} {p4}");
        }
        assert!(p1 < d1 / 4.0, "{kind}: dpm++ {p1} vs ddim {d1} at 100 steps");
    }
}
