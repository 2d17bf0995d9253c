//! `mdc bench`: forward and training-step timings of a model in the interpreter, as medians of
//! repeated runs after warm-up, with throughput, achieved GFLOP/s and peak memory.

use std::fmt;
use std::time::Instant;

use ndarray::{Array1, Array4};

use crate::base::rng::Rng;
pub use crate::base::timing::{process_cpu_seconds, process_peak_bytes, Timing};
use crate::graph::Graph;
use crate::interp::Executor;
use crate::kernels::bf16::Precision;
use crate::params::Params;
use crate::train::optim::{AdamW, AdamWHyper};

#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Images per forward (inference) pass.
    pub batch: usize,
    /// Images per training step.
    pub train_batch: usize,
    /// Timed repetitions of each measurement.
    pub iters: usize,
    /// Untimed repetitions first (fills buffer pools and caches).
    pub warmup: usize,
    pub seed: u64,
    /// Arithmetic of the conv and linear products.
    pub precision: Precision,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions { batch: 8, train_batch: 32, iters: 10, warmup: 2, seed: 0, precision: Precision::Fp32 }
    }
}

#[derive(Debug, Clone)]
pub struct BenchReport {
    pub options: BenchOptions,
    pub params: usize,
    pub flops_per_image: u64,
    pub threads: usize,
    /// Inference forward at `options.batch`.
    pub forward: Timing,
    /// forward_train + backward + AdamW update at `options.train_batch`.
    pub step: Timing,
    /// The training step's parts (medians), to see where time goes.
    pub step_forward_ms: f64,
    pub step_backward_ms: f64,
    pub step_update_ms: f64,
    /// Mean CPU time (all threads) per forward and per step; with `threads` cores free, wall
    /// time would be about this divided by `threads`.
    pub forward_cpu_ms: Option<f64>,
    pub step_cpu_ms: Option<f64>,
    /// Most bytes of activations/gradients the interpreter held at once.
    pub interp_peak_bytes: usize,
    /// The process's peak resident memory (VmHWM), where /proc tells it.
    pub process_peak_bytes: Option<usize>,
    /// /proc/loadavg when the run started: other work on the machine slows wall times.
    pub load_average: Option<String>,
    /// Per-op-kind times over the whole run, when `MDC_PROFILE` is set.
    pub profile: String,
}

impl BenchReport {
    pub fn forward_images_per_s(&self) -> f64 {
        self.options.batch as f64 / (self.forward.median_ms / 1e3)
    }
    pub fn step_images_per_s(&self) -> f64 {
        self.options.train_batch as f64 / (self.step.median_ms / 1e3)
    }
    pub fn forward_gflops(&self) -> f64 {
        self.flops_per_image as f64 * self.options.batch as f64 / (self.forward.median_ms / 1e3) / 1e9
    }
    /// A training step counted as three forwards (forward, and a backward of about twice that).
    pub fn step_gflops(&self) -> f64 {
        3.0 * self.flops_per_image as f64 * self.options.train_batch as f64
            / (self.step.median_ms / 1e3)
            / 1e9
    }
}

fn random_batch(graph: &Graph, batch: usize, rng: &mut Rng) -> (Array4<f32>, Array1<f32>) {
    let (c, h, w) = graph.input_shape().as_image().expect("models take images");
    let x = Array4::from_shape_simple_fn((batch, c, h, w), || rng.normal() as f32);
    let t = Array1::from_shape_simple_fn(batch, || rng.below(1000) as f32);
    (x, t)
}

pub fn run(graph: &Graph, opts: &BenchOptions) -> BenchReport {
    let load_average = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "));
    let params_init = Params::init(graph, opts.seed);
    let mut rng = Rng::new(opts.seed ^ 0x5eed);
    let mut exec = Executor::new(graph.clone()).with_precision(opts.precision);
    let reps = opts.warmup + opts.iters.max(1);

    let (x, t) = random_batch(graph, opts.batch, &mut rng);
    let mut forward_ms = Vec::new();
    let mut cpu_start = None;
    for i in 0..reps {
        if i == opts.warmup {
            cpu_start = process_cpu_seconds();
        }
        let start = Instant::now();
        std::hint::black_box(exec.forward(&params_init, x.view(), t.view()));
        if i >= opts.warmup {
            forward_ms.push(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    let timed = opts.iters.max(1) as f64;
    let forward_cpu_ms = cpu_start.zip(process_cpu_seconds()).map(|(a, b)| (b - a) * 1e3 / timed);

    // Training step on the noise-prediction MSE, as `mdc train` does it.
    let mut params = params_init;
    let mut grads = params.zeros_like();
    let mut opt = AdamW::new(&params, AdamWHyper::default());
    let (x, t) = random_batch(graph, opts.train_batch, &mut rng);
    let target = Array4::from_shape_simple_fn(x.raw_dim(), || rng.normal() as f32);
    let scale = 2.0 / target.len() as f32;
    let (mut step_ms, mut fwd_ms, mut bwd_ms, mut upd_ms) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut cpu_start = None;
    for i in 0..reps {
        if i == opts.warmup {
            cpu_start = process_cpu_seconds();
        }
        let start = Instant::now();
        let y = exec.forward_train(&params, x.view(), t.view());
        let t_fwd = Instant::now();
        let dy = (&y - &target) * scale;
        exec.backward(&params, dy.view(), &mut grads);
        let t_bwd = Instant::now();
        opt.step(&mut params, &grads, 1e-4);
        let end = Instant::now();
        if i >= opts.warmup {
            step_ms.push((end - start).as_secs_f64() * 1e3);
            fwd_ms.push((t_fwd - start).as_secs_f64() * 1e3);
            bwd_ms.push((t_bwd - t_fwd).as_secs_f64() * 1e3);
            upd_ms.push((end - t_bwd).as_secs_f64() * 1e3);
        }
    }
    let step_cpu_ms = cpu_start.zip(process_cpu_seconds()).map(|(a, b)| (b - a) * 1e3 / timed);
    BenchReport {
        options: opts.clone(),
        forward_cpu_ms,
        step_cpu_ms,
        params: graph.param_count(),
        flops_per_image: graph.flops_per_image(),
        threads: rayon::current_num_threads(),
        forward: Timing::of(forward_ms),
        step: Timing::of(step_ms),
        step_forward_ms: Timing::of(fwd_ms).median_ms,
        step_backward_ms: Timing::of(bwd_ms).median_ms,
        step_update_ms: Timing::of(upd_ms).median_ms,
        interp_peak_bytes: exec.peak_bytes(),
        process_peak_bytes: process_peak_bytes(),
        profile: exec.profile_report(),
        load_average,
    }
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.options;
        let mib = |b: usize| b as f64 / (1024.0 * 1024.0);
        writeln!(
            f,
            "{} parameters, {:.1} MFLOP per image forward, {} threads, {} products; medians of {} runs after {} warm-up",
            self.params,
            self.flops_per_image as f64 / 1e6,
            self.threads,
            o.precision.describe(),
            o.iters.max(1),
            o.warmup
        )?;
        if let Some(l) = &self.load_average {
            writeln!(f, "load average at start: {l} (other processes compete for the cores)")?;
        }
        writeln!(
            f,
            "forward    batch {:>3}: {:8.2} ms (min {:.2}, max {:.2})  {:8.1} images/s  {:6.1} GFLOP/s",
            o.batch,
            self.forward.median_ms,
            self.forward.min_ms,
            self.forward.max_ms,
            self.forward_images_per_s(),
            self.forward_gflops()
        )?;
        writeln!(
            f,
            "train step batch {:>3}: {:8.2} ms (min {:.2}, max {:.2})  {:8.1} images/s  {:6.1} GFLOP/s (3x forward FLOPs)",
            o.train_batch,
            self.step.median_ms,
            self.step.min_ms,
            self.step.max_ms,
            self.step_images_per_s(),
            self.step_gflops()
        )?;
        writeln!(
            f,
            "  of which forward {:.2} ms, backward {:.2} ms, AdamW {:.2} ms",
            self.step_forward_ms, self.step_backward_ms, self.step_update_ms
        )?;
        if let (Some(fc), Some(sc)) = (self.forward_cpu_ms, self.step_cpu_ms) {
            writeln!(f, "CPU time (all threads, mean): forward {fc:.1} ms, train step {sc:.1} ms")?;
        }
        write!(f, "peak memory: interpreter buffers {:.1} MiB", mib(self.interp_peak_bytes))?;
        if let Some(b) = self.process_peak_bytes {
            write!(f, ", process (VmHWM) {:.1} MiB", mib(b))?;
        }
        if !self.profile.is_empty() {
            write!(f, "\n{}", self.profile.trim_end())?;
        }
        Ok(())
    }
}
