//! The forward (noising) process: a beta schedule over T steps and q(x_t | x_0).

use ndarray::{Array4, ArrayView4, Axis, Zip};

/// How the betas are laid out over the T steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    /// Ho et al. 2020: betas evenly spaced from 1e-4 to 0.02 (for T = 1000; scaled for other T).
    Linear,
    /// Nichol & Dhariwal 2021: alpha_bar(t) = cos^2(((t/T + s) / (1 + s)) * pi/2), s = 0.008.
    Cosine,
}

impl ScheduleKind {
    pub fn name(self) -> &'static str {
        match self {
            ScheduleKind::Linear => "linear",
            ScheduleKind::Cosine => "cosine",
        }
    }

    pub fn parse(s: &str) -> Option<ScheduleKind> {
        match s {
            "linear" => Some(ScheduleKind::Linear),
            "cosine" => Some(ScheduleKind::Cosine),
            _ => None,
        }
    }
}

impl std::fmt::Display for ScheduleKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Betas and their cumulative products for timesteps 0..T, kept in f64 so that 1 - alpha_bar
/// near t = 0 (about 1e-4) keeps its precision.
#[derive(Debug, Clone, PartialEq)]
pub struct NoiseSchedule {
    pub kind: ScheduleKind,
    pub betas: Vec<f64>,
    pub alphas_cumprod: Vec<f64>,
}

/// Offset s of the cosine schedule, which keeps beta_0 from being vanishingly small.
const COSINE_OFFSET: f64 = 0.008;
/// Nichol & Dhariwal clip betas here to avoid a singularity at t = T.
const COSINE_MAX_BETA: f64 = 0.999;

impl NoiseSchedule {
    pub fn new(kind: ScheduleKind, timesteps: usize) -> NoiseSchedule {
        assert!(timesteps >= 1, "a schedule needs at least one timestep");
        let t_count = timesteps as f64;
        let betas: Vec<f64> = match kind {
            ScheduleKind::Linear => {
                // The 1e-4..0.02 range is for T = 1000; scale so other T add the same total noise.
                let scale = 1000.0 / t_count;
                let (lo, hi) = (scale * 1e-4, (scale * 0.02).min(COSINE_MAX_BETA));
                (0..timesteps)
                    .map(|i| if timesteps == 1 { lo } else { lo + (hi - lo) * i as f64 / (t_count - 1.0) })
                    .collect()
            }
            ScheduleKind::Cosine => {
                let f = |t: f64| {
                    ((t / t_count + COSINE_OFFSET) / (1.0 + COSINE_OFFSET) * std::f64::consts::FRAC_PI_2)
                        .cos()
                        .powi(2)
                };
                (0..timesteps).map(|i| (1.0 - f(i as f64 + 1.0) / f(i as f64)).min(COSINE_MAX_BETA)).collect()
            }
        };
        let mut acc = 1.0;
        let alphas_cumprod = betas
            .iter()
            .map(|b| {
                acc *= 1.0 - b;
                acc
            })
            .collect();
        NoiseSchedule { kind, betas, alphas_cumprod }
    }

    pub fn timesteps(&self) -> usize {
        self.betas.len()
    }

    /// alpha_bar at `t`, with alpha_bar(-1) = 1 (no noise) for the last sampling step.
    pub fn alpha_bar(&self, t: Option<usize>) -> f64 {
        t.map_or(1.0, |t| self.alphas_cumprod[t])
    }

    /// x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) noise, per image (t[i] for image i).
    pub fn add_noise(&self, x0: ArrayView4<f32>, noise: ArrayView4<f32>, t: &[usize]) -> Array4<f32> {
        assert_eq!(x0.shape(), noise.shape());
        assert_eq!(x0.len_of(Axis(0)), t.len());
        let mut out = Array4::zeros(x0.raw_dim());
        for (i, &ti) in t.iter().enumerate() {
            let ab = self.alphas_cumprod[ti];
            let (a, b) = (ab.sqrt() as f32, (1.0 - ab).sqrt() as f32);
            Zip::from(out.index_axis_mut(Axis(0), i))
                .and(x0.index_axis(Axis(0), i))
                .and(noise.index_axis(Axis(0), i))
                .for_each(|o, &x, &n| *o = a * x + b * n);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_matches_ho_et_al() {
        let s = NoiseSchedule::new(ScheduleKind::Linear, 1000);
        assert_eq!(s.timesteps(), 1000);
        assert!((s.betas[0] - 1e-4).abs() < 1e-12);
        assert!((s.betas[999] - 0.02).abs() < 1e-12);
        assert!((s.alphas_cumprod[0] - 0.9999).abs() < 1e-12);
        // torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0)[-1]
        assert!((s.alphas_cumprod[999] - 4.0358e-5).abs() < 1e-8, "{}", s.alphas_cumprod[999]);
        assert!(s.alphas_cumprod.windows(2).all(|w| w[1] < w[0]));
    }

    #[test]
    fn cosine_follows_the_closed_form_alpha_bar() {
        let t_count = 1000;
        let s = NoiseSchedule::new(ScheduleKind::Cosine, t_count);
        let f = |t: f64| ((t / t_count as f64 + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2).cos().powi(2);
        for t in [0usize, 1, 10, 100, 500, 900, 990] {
            let want = f(t as f64 + 1.0) / f(0.0);
            assert!((s.alphas_cumprod[t] - want).abs() < 1e-9, "t={t}: {} vs {want}", s.alphas_cumprod[t]);
        }
        assert!(s.betas.iter().all(|&b| b > 0.0 && b <= 0.999));
        assert_eq!(*s.betas.last().unwrap(), 0.999);
        assert!(s.alphas_cumprod[999] < 1e-6);
    }

    #[test]
    fn add_noise_mixes_per_image() {
        let s = NoiseSchedule::new(ScheduleKind::Linear, 1000);
        let x0 = Array4::from_elem([2, 1, 2, 2], 1.0f32);
        let noise = Array4::from_elem([2, 1, 2, 2], -1.0f32);
        let xt = s.add_noise(x0.view(), noise.view(), &[0, 999]);
        let a0 = s.alphas_cumprod[0];
        let a1 = s.alphas_cumprod[999];
        assert!((xt[[0, 0, 0, 0]] as f64 - (a0.sqrt() - (1.0 - a0).sqrt())).abs() < 1e-6);
        assert!((xt[[1, 0, 1, 1]] as f64 - (a1.sqrt() - (1.0 - a1).sqrt())).abs() < 1e-6);
    }
}
