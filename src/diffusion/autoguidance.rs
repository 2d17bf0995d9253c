//! Autoguidance (Karras et al. 2024, "Guiding a diffusion model with a bad version of itself"):
//! the prediction D = D_guide + w (D_model - D_guide), where the guide is a weaker model with the
//! same kinds of errors, here the same run's EMA weights from early in training. Where the two
//! agree nothing changes; where the trained model has moved away from the early one (the shape
//! of a digit, once it has learned it) the step goes further in that direction. Unlike
//! classifier-free guidance it needs no labels and keeps the variety of the samples.
//!
//! Both predictions are linear in the network's output, so the combination is the same whether
//! the output is the noise or the velocity.
//!
//! Steering of images without a class label can stop short of the noisiest steps
//! ([`Steering::max_t`]). Which digit a sample becomes is settled there, and steering at those
//! steps exaggerates whichever digits the model slightly favours (Kynkäänniemi et al. 2024 found
//! the same for classifier-free guidance). For the samples of a conditional model's null label,
//! the model alone above t = 850 brought the Fréchet distance from 14.5 to 10.5 over five training
//! runs. An image with a label keeps the steering at every step: its label settles the digit,
//! and there the limit cost one run's 5s three points (docs/experiments/conditional.md, "Autoguidance below
//! the noisiest steps").

use anyhow::bail;
use ndarray::{Array4, Zip};

use super::{halves, labelled_and_null_batch, plain_guidance_parts, Denoiser, GuidanceParts};

/// How autoguidance steers: with weight `weight` (1: the model alone), at every step for an image
/// with a class label, and at the timesteps t <= `max_t` for one without (every step when None).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Steering {
    pub weight: f32,
    pub max_t: Option<u64>,
}

impl Steering {
    /// Weight `weight` at every step.
    pub fn everywhere(weight: f32) -> Steering {
        Steering { weight, max_t: None }
    }

    /// The weight for an image at timestep `t`, with a class label or not: 1 (the model alone)
    /// for one without a label above `max_t`.
    pub fn weight_at(&self, t: f32, labelled: bool) -> f32 {
        match self.max_t {
            Some(max) if t > max as f32 && !labelled => 1.0,
            _ => self.weight,
        }
    }
}

/// "3", or "3 at t <= 850" when the steering of unlabelled images stops short of the noisiest
/// steps.
impl std::fmt::Display for Steering {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.weight)?;
        match self.max_t {
            Some(max) => write!(f, " at t <= {max}"),
            None => Ok(()),
        }
    }
}

/// An autoguidance weight w as a command line gives it: 1 (the model alone) to 20.
pub fn parse_autoguidance_weight(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(v) if v.is_finite() && (1.0..=20.0).contains(&v) => Ok(v),
        Ok(v) => Err(format!("expected a weight from 1 (the model alone) to 20, found {v}")),
        Err(_) => Err(format!("expected a number (e.g. 3), found {s:?}")),
    }
}

/// A model steered away from its guide as `steering` says.
pub struct AutoGuided<'a> {
    pub model: &'a mut dyn Denoiser,
    pub guide: &'a mut dyn Denoiser,
    pub steering: Steering,
}

impl AutoGuided<'_> {
    /// Each image's weight at its timestep and label, or None when every one is 1 (the guide
    /// need not run).
    fn weights(&self, t: &[f32], y: Option<&[u32]>) -> Option<Vec<f32>> {
        let null = self.model.null_label();
        let labelled = |i: usize| matches!((y, null), (Some(y), Some(null)) if y[i] != null);
        let weights: Vec<f32> =
            t.iter().enumerate().map(|(i, &t)| self.steering.weight_at(t, labelled(i))).collect();
        weights.iter().any(|&w| w != 1.0).then_some(weights)
    }
}

impl Denoiser for AutoGuided<'_> {
    fn predict_noise(
        &mut self,
        x: &Array4<f32>,
        t: &[f32],
        y: Option<&[u32]>,
    ) -> anyhow::Result<Array4<f32>> {
        let model = self.model.predict_noise(x, t, y)?;
        let Some(weights) = self.weights(t, y) else {
            return Ok(model);
        };
        let mut out = self.guide.predict_noise(x, t, y)?;
        if out.shape() != model.shape() {
            bail!("the guide returned shape {:?}, the model {:?}", out.shape(), model.shape());
        }
        steer(&mut out, &model, &weights);
        Ok(out)
    }

    /// Class guidance adds its push to the autoguided conditional prediction (see
    /// [`super::ClassGuidance`]): the model runs the labelled and null halves as one batch of 2N,
    /// the guide only the labelled half.
    fn guidance_parts(
        &mut self,
        x: &Array4<f32>,
        t: &[f32],
        labels: &[u32],
        null: u32,
    ) -> anyhow::Result<GuidanceParts> {
        let Some(weights) = self.weights(t, Some(labels)) else {
            return plain_guidance_parts(self.model, x, t, labels, null);
        };
        let (xx, tt, yy) = labelled_and_null_batch(x, t, labels, null);
        let (model_labelled, model_null) =
            halves(self.model.predict_noise(&xx, &tt, Some(&yy))?, labels.len())?;
        let mut labelled = self.guide.predict_noise(x, t, Some(labels))?;
        if labelled.shape() != model_labelled.shape() {
            bail!("the guide returned shape {:?}, the model {:?}", labelled.shape(), model_labelled.shape());
        }
        steer(&mut labelled, &model_labelled, &weights);
        Ok(GuidanceParts { labelled, model_labelled, model_null })
    }
}

/// guide + w (model - guide), in place of `guide`, with image i's w = `weights[i]`.
fn steer(guide: &mut Array4<f32>, model: &Array4<f32>, weights: &[f32]) {
    for ((mut g, m), &w) in guide.outer_iter_mut().zip(model.outer_iter()).zip(weights) {
        Zip::from(&mut g).and(&m).for_each(|g, &m| *g += w * (m - *g));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Predicts a constant for every pixel, and counts its calls (so a test can tell whether
    /// the guide ran); a conditional model when it has a null label.
    struct Constant(f32, usize, Option<u32>);

    impl Denoiser for Constant {
        fn predict_noise(
            &mut self,
            x: &Array4<f32>,
            _: &[f32],
            _: Option<&[u32]>,
        ) -> anyhow::Result<Array4<f32>> {
            self.1 += 1;
            Ok(Array4::from_elem(x.raw_dim(), self.0))
        }

        fn null_label(&self) -> Option<u32> {
            self.2
        }
    }

    #[test]
    fn extrapolates_from_the_guide_through_the_model() {
        let x = Array4::zeros([2, 1, 2, 2]);
        for (w, want) in [(1.0, 0.5), (3.0, 0.5 + 2.0 * (0.5 - -0.25)), (0.0, -0.25)] {
            let (mut model, mut guide) = (Constant(0.5, 0, None), Constant(-0.25, 0, None));
            let mut g =
                AutoGuided { model: &mut model, guide: &mut guide, steering: Steering::everywhere(w) };
            let out = g.predict_noise(&x, &[1.0, 2.0], None).unwrap();
            assert!(out.iter().all(|&v| (v - want).abs() < 1e-6), "w {w}: {out:?}");
        }
    }

    #[test]
    fn above_max_t_each_image_gets_the_model_alone() {
        let x = Array4::zeros([3, 1, 2, 2]);
        let steering = Steering { weight: 3.0, max_t: Some(500) };
        let (mut model, mut guide) = (Constant(0.5, 0, None), Constant(-0.25, 0, None));
        let mut g = AutoGuided { model: &mut model, guide: &mut guide, steering };
        // One image at the limit (steered), one above it (the model alone), one far below.
        let out = g.predict_noise(&x, &[500.0, 501.0, 10.0], None).unwrap();
        let steered = 0.5 + 2.0 * (0.5 - -0.25);
        for (i, want) in [steered, 0.5, steered].into_iter().enumerate() {
            let img = out.index_axis(ndarray::Axis(0), i);
            assert!(img.iter().all(|&v| (v - want).abs() < 1e-6), "image {i}: {img:?}");
        }
        assert_eq!(guide.1, 1);
        // A chunk entirely above the limit never runs the guide.
        let mut g = AutoGuided { model: &mut model, guide: &mut guide, steering };
        let out = g.predict_noise(&x, &[900.0; 3], None).unwrap();
        assert!(out.iter().all(|&v| v == 0.5));
        assert_eq!(guide.1, 1, "the guide ran for a chunk above max_t");
    }

    #[test]
    fn above_max_t_an_image_with_a_label_is_still_steered() {
        let x = Array4::zeros([3, 1, 2, 2]);
        let steering = Steering { weight: 3.0, max_t: Some(500) };
        let (mut model, mut guide) = (Constant(0.5, 0, Some(10)), Constant(-0.25, 0, None));
        let mut g = AutoGuided { model: &mut model, guide: &mut guide, steering };
        let out = g.predict_noise(&x, &[900.0; 3], Some(&[7, 10, 0])).unwrap();
        let steered = 0.5 + 2.0 * (0.5 - -0.25);
        for (i, want) in [steered, 0.5, steered].into_iter().enumerate() {
            let img = out.index_axis(ndarray::Axis(0), i);
            assert!(img.iter().all(|&v| (v - want).abs() < 1e-6), "image {i}: {img:?}");
        }
        // Every label null (or none given): the guide sits out.
        let mut g = AutoGuided { model: &mut model, guide: &mut guide, steering };
        g.predict_noise(&x, &[900.0; 3], Some(&[10; 3])).unwrap();
        g.predict_noise(&x, &[900.0; 3], None).unwrap();
        assert_eq!(guide.1, 1, "the guide ran for unlabelled images above max_t");
    }
}
