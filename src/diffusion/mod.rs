//! DDPM noise schedules and samplers, independent of what predicts the noise: the interpreter
//! (from a checkpoint) and onnxruntime (from an exported model) both implement [`Denoiser`].

mod autoguidance;
mod interp_denoiser;
mod prediction;
mod progress;
mod sampler;
mod schedule;

pub use autoguidance::AutoGuided;
pub use interp_denoiser::InterpDenoiser;
pub use prediction::Prediction;
pub use progress::{sample_images, sample_with_progress};
pub use sampler::{sample, ClassGuidance, SampleOptions, Sampler, SamplerKind};
pub use schedule::{NoiseSchedule, ScheduleKind};

use ndarray::Array4;

/// Classifier-free guidance scale S used when none is given (`mdc sample --guidance`, the
/// training run's grids): chosen by measurement on three training runs, see docs/conditional.md
/// ("Adding the two guidances"). It is the model's own scale, added to autoguidance
/// ([`ClassGuidance`]), so it is larger than a scale that guides the autoguided prediction.
pub const DEFAULT_GUIDANCE: f32 = 6.0;

/// Anything that predicts the noise in `x` [N, C, H, W] at timesteps `t` (one per image, as f32)
/// and, for a class-conditional model, class labels `y` (one per image; the null label means
/// "no class"; None: every image gets the null label).
pub trait Denoiser {
    fn predict_noise(&mut self, x: &Array4<f32>, t: &[f32], y: Option<&[u32]>)
        -> anyhow::Result<Array4<f32>>;

    /// What classifier-free guidance combines (see [`GuidanceParts`]) for images labelled
    /// `labels` and the same images with the `null` label. This default is a plain model: one
    /// batch of 2N, conditional half first. A denoiser that is itself a guided combination
    /// ([`AutoGuided`]) overrides it, so that class guidance steers the model alone.
    fn guidance_parts(
        &mut self,
        x: &Array4<f32>,
        t: &[f32],
        labels: &[u32],
        null: u32,
    ) -> anyhow::Result<GuidanceParts> {
        let (model_labelled, model_null) = predict_labelled_and_null(self, x, t, labels, null)?;
        Ok(GuidanceParts { labelled: model_labelled.clone(), model_labelled, model_null })
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

/// `den`'s predictions for `labels` and for the null label, run as ONE batch of 2N.
pub fn predict_labelled_and_null<D: Denoiser + ?Sized>(
    den: &mut D,
    x: &Array4<f32>,
    t: &[f32],
    labels: &[u32],
    null: u32,
) -> anyhow::Result<(Array4<f32>, Array4<f32>)> {
    let n = labels.len();
    let xx = ndarray::concatenate![ndarray::Axis(0), x.view(), x.view()];
    let tt = [t, t].concat();
    let yy = [labels, &vec![null; n][..]].concat();
    let both = den.predict_noise(&xx, &tt, Some(&yy))?;
    if both.len_of(ndarray::Axis(0)) != 2 * n {
        anyhow::bail!(
            "the denoiser returned {} images for a batch of {}",
            both.len_of(ndarray::Axis(0)),
            2 * n
        );
    }
    let (labelled, null) = both.view().split_at(ndarray::Axis(0), n);
    Ok((labelled.to_owned(), null.to_owned()))
}
