//! Sampling with a progress bar: the interpreter from weights, or any [`Denoiser`].

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};
use ndarray::Array4;

use crate::diffusion::{sample, AutoGuided, Denoiser, NoiseSchedule, SampleOptions, Steering};
use crate::graph::Graph;
use crate::interp::{Executor, InterpDenoiser};
use crate::params::Params;

/// Samples images with the interpreter, showing a progress bar when asked; with `guide` =
/// (guide weights, how to steer), autoguided ([`AutoGuided`]).
pub fn sample_images(
    graph: &Graph,
    params: Params,
    guide: Option<(Params, Steering)>,
    schedule: &NoiseSchedule,
    image: [usize; 3],
    opts: &SampleOptions,
    progress: bool,
) -> anyhow::Result<Array4<f32>> {
    let mut den = InterpDenoiser { executor: Executor::new(graph.clone()), params };
    match guide {
        None => sample_with_progress(&mut den, schedule, image, opts, progress),
        Some((weights, steering)) => {
            let mut guide = InterpDenoiser { executor: Executor::new(graph.clone()), params: weights };
            let mut guided = AutoGuided { model: &mut den, guide: &mut guide, steering };
            sample_with_progress(&mut guided, schedule, image, opts, progress)
        }
    }
}

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
