//! Autoguidance (Karras et al. 2024, "Guiding a diffusion model with a bad version of itself"):
//! the prediction D = D_guide + w (D_model - D_guide), where the guide is a weaker model with the
//! same kinds of errors, here the same run's EMA weights from early in training. Where the two
//! agree nothing changes; where the trained model has moved away from the early one (the shape
//! of a digit, once it has learned it) the step goes further in that direction. Unlike
//! classifier-free guidance it needs no labels and keeps the variety of the samples.
//!
//! Both predictions are linear in the network's output, so the combination is the same whether
//! the output is the noise or the velocity.

use anyhow::bail;
use ndarray::{Array4, Zip};

use super::{halves, labelled_and_null_batch, plain_guidance_parts, Denoiser, GuidanceParts};

/// A model steered away from its guide with weight `weight` (1: the model alone).
pub struct AutoGuided<'a> {
    pub model: &'a mut dyn Denoiser,
    pub guide: &'a mut dyn Denoiser,
    pub weight: f32,
}

impl Denoiser for AutoGuided<'_> {
    fn predict_noise(
        &mut self,
        x: &Array4<f32>,
        t: &[f32],
        y: Option<&[u32]>,
    ) -> anyhow::Result<Array4<f32>> {
        let model = self.model.predict_noise(x, t, y)?;
        if self.weight == 1.0 {
            return Ok(model);
        }
        let mut out = self.guide.predict_noise(x, t, y)?;
        if out.shape() != model.shape() {
            bail!("the guide returned shape {:?}, the model {:?}", out.shape(), model.shape());
        }
        steer(&mut out, &model, self.weight);
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
        if self.weight == 1.0 {
            return plain_guidance_parts(self.model, x, t, labels, null);
        }
        let (xx, tt, yy) = labelled_and_null_batch(x, t, labels, null);
        let (model_labelled, model_null) =
            halves(self.model.predict_noise(&xx, &tt, Some(&yy))?, labels.len())?;
        let mut labelled = self.guide.predict_noise(x, t, Some(labels))?;
        if labelled.shape() != model_labelled.shape() {
            bail!("the guide returned shape {:?}, the model {:?}", labelled.shape(), model_labelled.shape());
        }
        steer(&mut labelled, &model_labelled, self.weight);
        Ok(GuidanceParts { labelled, model_labelled, model_null })
    }
}

/// guide + w (model - guide), in place of `guide`.
fn steer(guide: &mut Array4<f32>, model: &Array4<f32>, w: f32) {
    Zip::from(guide).and(model).for_each(|g, &m| *g += w * (m - *g));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Predicts a constant for every pixel.
    struct Constant(f32);

    impl Denoiser for Constant {
        fn predict_noise(
            &mut self,
            x: &Array4<f32>,
            _: &[f32],
            _: Option<&[u32]>,
        ) -> anyhow::Result<Array4<f32>> {
            Ok(Array4::from_elem(x.raw_dim(), self.0))
        }
    }

    #[test]
    fn extrapolates_from_the_guide_through_the_model() {
        let x = Array4::zeros([2, 1, 2, 2]);
        for (w, want) in [(1.0, 0.5), (3.0, 0.5 + 2.0 * (0.5 - -0.25)), (0.0, -0.25)] {
            let (mut model, mut guide) = (Constant(0.5), Constant(-0.25));
            let mut g = AutoGuided { model: &mut model, guide: &mut guide, weight: w };
            let out = g.predict_noise(&x, &[1.0, 2.0], None).unwrap();
            assert!(out.iter().all(|&v| (v - want).abs() < 1e-6), "w {w}: {out:?}");
        }
    }
}
