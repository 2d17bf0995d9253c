//! Sampling with a progress bar, for any [`Denoiser`] (the interpreter, onnxruntime).

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};
use ndarray::Array4;

use super::{sample, Denoiser, NoiseSchedule, SampleOptions};

/// Samples images with any denoiser (the interpreter, onnxruntime), showing a progress bar when
/// asked and stderr is a terminal.
pub fn sample_with_progress(
    den: &mut dyn Denoiser,
    schedule: &NoiseSchedule,
    image: [usize; 3],
    opts: &SampleOptions,
    progress: bool,
) -> anyhow::Result<Array4<f32>> {
    let bar =
        if progress && std::io::stderr().is_terminal() { ProgressBar::new(1) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>8} [{bar:30}] {pos}/{len} denoising steps | {elapsed} < {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix("sample");
    let images = sample(den, schedule, image, opts, &mut |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish_and_clear();
    Ok(images)
}
