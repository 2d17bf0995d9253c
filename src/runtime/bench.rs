//! Forward-pass timing of an exported model in onnxruntime (what `mdc bench model.onnx` reports).

use std::time::Instant;

use ndarray::{Array1, Array4};

use super::OrtDenoiser;
use crate::rng::Rng;

/// Timing of one batch size: per-call milliseconds over the measured runs.
#[derive(Debug, Clone, PartialEq)]
pub struct ForwardTiming {
    pub batch: usize,
    pub median_ms: f64,
    pub min_ms: f64,
    pub runs: usize,
}

impl ForwardTiming {
    pub fn images_per_second(&self) -> f64 {
        self.batch as f64 * 1000.0 / self.median_ms
    }
}

/// Times `runs` forward calls at `batch` after `warmup` untimed ones (the first calls pay for
/// memory planning and weight pre-packing). Inputs are seeded random images at mid-range
/// timesteps; the model's own image size is used.
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
    let t = Array1::from_shape_fn(batch, |i| ((i * 97 + 500) % info.schedule.timesteps.max(1)) as f32);
    for _ in 0..warmup {
        model.forward(x.view(), t.view())?;
    }
    let mut ms = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        model.forward(x.view(), t.view())?;
        ms.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(ForwardTiming {
        batch,
        median_ms: median(&mut ms),
        min_ms: ms.iter().cloned().fold(f64::INFINITY, f64::min),
        runs,
    })
}

/// The standard report: batch 1 and batch 8, medians.
pub fn time_standard_batches(model: &mut OrtDenoiser) -> anyhow::Result<Vec<ForwardTiming>> {
    Ok(vec![time_forward(model, 1, 10, 50)?, time_forward(model, 8, 3, 20)?])
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(super::median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(super::median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
