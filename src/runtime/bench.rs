//! Forward-pass timing of an exported model in onnxruntime (what `mdc bench model.onnx` reports),
//! measured like the interpreter's bench ([`crate::bench`]): medians after warm-up, plus CPU
//! time per call, the steadier measure when other work shares the machine.

use std::time::Instant;

use ndarray::{Array1, Array4};

use super::OrtDenoiser;
use crate::base::rng::Rng;
use crate::base::timing::{process_cpu_seconds, Timing};

/// Timing of one batch size.
#[derive(Debug, Clone, PartialEq)]
pub struct ForwardTiming {
    pub batch: usize,
    /// Wall time per call.
    pub wall: Timing,
    /// Mean CPU time (all threads) per call, where /proc tells it.
    pub cpu_ms: Option<f64>,
}

impl ForwardTiming {
    pub fn images_per_second(&self) -> f64 {
        self.batch as f64 * 1000.0 / self.wall.median_ms
    }
}

/// Times `runs` forward calls at `batch` after `warmup` untimed ones (the first calls pay for
/// memory planning and weight pre-packing). Inputs are seeded random images at spread-out
/// timesteps, at the model's own image size.
pub fn time_forward(
    model: &mut OrtDenoiser,
    batch: usize,
    warmup: usize,
    runs: usize,
) -> anyhow::Result<ForwardTiming> {
    anyhow::ensure!(batch > 0 && runs > 0, "batch and runs must be at least 1");
    let info = model.info().clone();
    let mut rng = Rng::new(0x5eed);
    let x =
        Array4::from_shape_simple_fn((batch, info.channels, info.height, info.width), || rng.normal() as f32);
    let t = Array1::from_shape_simple_fn(batch, || rng.below(info.schedule.timesteps.max(1)) as f32);
    for _ in 0..warmup {
        model.forward(x.view(), t.view())?;
    }
    let cpu_start = process_cpu_seconds();
    let mut ms = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        model.forward(x.view(), t.view())?;
        ms.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    let cpu_ms = match (cpu_start, process_cpu_seconds()) {
        (Some(a), Some(b)) => Some((b - a) * 1000.0 / runs as f64),
        _ => None,
    };
    Ok(ForwardTiming { batch, wall: Timing::of(ms), cpu_ms })
}

/// Sampling throughput: one DDIM run of `steps` steps over `images` images at once, every step
/// an onnxruntime call, with the model's own noise schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingTiming {
    pub images: usize,
    pub steps: usize,
    pub seconds: f64,
}

impl SamplingTiming {
    pub fn images_per_second(&self) -> f64 {
        self.images as f64 / self.seconds
    }
}

pub fn time_sampling(model: &mut OrtDenoiser, images: usize, steps: usize) -> anyhow::Result<SamplingTiming> {
    use crate::diffusion::{sample, SampleOptions, Sampler};
    let info = model.info().clone();
    let schedule = info.schedule.noise_schedule().map_err(anyhow::Error::msg)?;
    let opts = SampleOptions {
        guidance: None,
        count: images,
        batch: images,
        sampler: Sampler::Ddim { steps, eta: 0.0 },
        clip_x0: true,
        prediction: info.schedule.prediction,
        seed: 0,
    };
    let start = Instant::now();
    sample(model, &schedule, info.image(), &opts, &mut |_, _| {})?;
    Ok(SamplingTiming { images, steps, seconds: start.elapsed().as_secs_f64() })
}
