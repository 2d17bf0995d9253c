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
/// training run's grids): chosen by measurement, see docs/recipe.md.
pub const DEFAULT_GUIDANCE: f32 = 2.0;

/// Anything that predicts the noise in `x` [N, C, H, W] at timesteps `t` (one per image, as f32)
/// and, for a class-conditional model, class labels `y` (one per image; the null label means
/// "no class"; None: every image gets the null label).
pub trait Denoiser {
    fn predict_noise(&mut self, x: &Array4<f32>, t: &[f32], y: Option<&[u32]>)
        -> anyhow::Result<Array4<f32>>;
}
