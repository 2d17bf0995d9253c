//! DDPM noise schedules and samplers, independent of what predicts the noise: the interpreter
//! (from a checkpoint) and onnxruntime (from an exported model) both implement [`Denoiser`].

mod autoguidance;
mod class_plan;
mod prediction;
mod progress;
mod sampler;
mod schedule;

pub use autoguidance::{parse_autoguidance_weight, AutoGuided, Steering};
pub use class_plan::{class_plan, describe_plan, parse_guidance_scale, ClassPlanError};
pub use prediction::Prediction;
pub use progress::sample_with_progress;
pub use sampler::{sample, ClassGuidance, SampleOptions, Sampler, SamplerKind};
pub use schedule::{NoiseSchedule, ScheduleKind};

use ndarray::{Array4, Axis};

/// Classifier-free guidance scale S used when none is given (`mdc sample --guidance`, the
/// training run's grids): chosen on the training run whose 5s failed, checked on four training
/// runs, see docs/experiments/conditional.md ("Adding the two guidances"). It is the model's own scale, added to autoguidance
/// ([`ClassGuidance`]), so it is larger than a scale that guides the autoguided prediction.
pub const DEFAULT_GUIDANCE: f32 = 6.0;

/// Anything that predicts the noise in `x` [N, C, H, W] at timesteps `t` (one per image, as f32)
/// and, for a class-conditional model, class labels `y` (one per image; the null label means
/// "no class"; None: every image gets the null label).
pub trait Denoiser {
    fn predict_noise(&mut self, x: &Array4<f32>, t: &[f32], y: Option<&[u32]>)
        -> anyhow::Result<Array4<f32>>;

    /// What classifier-free guidance combines (see [`GuidanceParts`]) for images labelled
    /// `labels` and the same images with the `null` label. This default is a plain model
    /// ([`plain_guidance_parts`]). A denoiser that is itself a guided combination
    /// ([`AutoGuided`]) overrides it, so that class guidance steers the model alone.
    fn guidance_parts(
        &mut self,
        x: &Array4<f32>,
        t: &[f32],
        labels: &[u32],
        null: u32,
    ) -> anyhow::Result<GuidanceParts> {
        plain_guidance_parts(self, x, t, labels, null)
    }

    /// The label that means "no class" (None: not a class-conditional model).
    fn null_label(&self) -> Option<u32> {
        None
    }
}

/// The three predictions class guidance combines into
/// `labelled + (S - 1) (model_labelled - model_null)` (see [`ClassGuidance`]).
pub struct GuidanceParts {
    /// The denoiser's prediction for the labels, as it samples without class guidance
    /// (autoguided, where it is): what S = 1 gives.
    pub labelled: Array4<f32>,
    /// The underlying model's own predictions with the labels and with the null label: their
    /// difference is the direction class guidance pushes in.
    pub model_labelled: Array4<f32>,
    pub model_null: Array4<f32>,
}

/// [`GuidanceParts`] of a plain model: its predictions for `labels` and for the null label, run
/// as ONE batch of 2N; the labelled half is also what S = 1 gives.
pub fn plain_guidance_parts<D: Denoiser + ?Sized>(
    den: &mut D,
    x: &Array4<f32>,
    t: &[f32],
    labels: &[u32],
    null: u32,
) -> anyhow::Result<GuidanceParts> {
    let (xx, tt, yy) = labelled_and_null_batch(x, t, labels, null);
    let both = den.predict_noise(&xx, &tt, Some(&yy))?;
    let (model_labelled, model_null) = halves(both, labels.len())?;
    Ok(GuidanceParts { labelled: model_labelled.clone(), model_labelled, model_null })
}

/// The batch of 2N that guidance runs: the images with their labels, then again with `null`.
pub fn labelled_and_null_batch(
    x: &Array4<f32>,
    t: &[f32],
    labels: &[u32],
    null: u32,
) -> (Array4<f32>, Vec<f32>, Vec<u32>) {
    let xx = ndarray::concatenate![Axis(0), x.view(), x.view()];
    (xx, [t, t].concat(), [labels, &vec![null; labels.len()][..]].concat())
}

/// Splits a prediction for [`labelled_and_null_batch`] into its labelled and null halves.
pub fn halves(both: Array4<f32>, n: usize) -> anyhow::Result<(Array4<f32>, Array4<f32>)> {
    if both.len_of(Axis(0)) != 2 * n {
        anyhow::bail!("the denoiser returned {} images for a batch of {}", both.len_of(Axis(0)), 2 * n);
    }
    let (labelled, null) = both.view().split_at(Axis(0), n);
    Ok((labelled.to_owned(), null.to_owned()))
}
