//! `mdc bench MODEL --batch N`: times the interpreter on a model file (forward at N images,
//! a training step at `--train-batch` images, default N) and prints medians, images/s, GFLOP/s
//! and peak memory. `mdc bench model.onnx [--device cpu|cuda]`: onnxruntime forward medians at
//! batch 1 and N, and DDIM sampling images/s.

use std::path::PathBuf;
use std::process::ExitCode;

use super::sample::MAX_IMAGES;
use super::UsageError;
use crate::bench::{self, BenchOptions};
use crate::kernels::bf16::{self, Precision};
use crate::model;
use crate::runtime::{self, Device, OrtDenoiser, SessionConfig};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Model file (TOML), or a model exported with `mdc export onnx` (timed in onnxruntime).
    #[arg(value_name = "MODEL")]
    pub model: PathBuf,
    /// Images per forward pass.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=MAX_IMAGES))]
    pub batch: u64,
    /// Images per training step (forward, backward, AdamW); defaults to --batch.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=MAX_IMAGES))]
    pub train_batch: Option<u64>,
    /// Timed repetitions of each measurement (medians are reported).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub iters: u64,
    /// Untimed repetitions first.
    #[arg(long, default_value_t = 2)]
    pub warmup: u64,
    /// Seed of the random weights and inputs.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Interpreter: arithmetic of the conv and linear products, bf16 (needs AVX512_BF16) or fp32
    /// [default: bf16 where the CPU has it, else fp32].
    #[arg(long, value_enum)]
    pub precision: Option<Precision>,
    /// ONNX models: where onnxruntime runs them.
    #[arg(long, value_enum, default_value_t = Device::Cpu)]
    pub device: Device,
    /// ONNX models: run one whose graph no longer matches the digest recorded at export.
    #[arg(long)]
    pub allow_modified: bool,
    /// ONNX models: DDIM steps of the sampling measurement (0 skips it).
    #[arg(long, default_value_t = 50)]
    pub sample_steps: usize,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    if args.model.extension().is_some_and(|e| e.eq_ignore_ascii_case("onnx")) {
        return run_onnx(args);
    }
    if args.device != Device::Cpu {
        anyhow::bail!("--device {} times ONNX models; the interpreter runs on the CPU", args.device);
    }
    let model = model::load(&args.model)?;
    let (precision, note) =
        bf16::resolve(args.precision.unwrap_or(Precision::Bf16), args.precision.is_some())
            .map_err(|e| UsageError(format!("--precision: {e}")))?;
    if let Some(note) = note {
        eprintln!("{note}");
    }
    let opts = BenchOptions {
        precision,
        batch: args.batch as usize,
        train_batch: args.train_batch.unwrap_or(args.batch) as usize,
        iters: args.iters as usize,
        warmup: args.warmup as usize,
        seed: args.seed,
    };
    eprintln!(
        "benchmarking {} (forward batch {}, training batch {}) ...",
        args.model.display(),
        opts.batch,
        opts.train_batch
    );
    println!("{}", bench::run(&model.graph, &opts));
    Ok(ExitCode::SUCCESS)
}

/// onnxruntime forward medians at batch 1 and --batch, then a DDIM sampling run.
fn run_onnx(args: &Args) -> anyhow::Result<ExitCode> {
    let config =
        SessionConfig { device: args.device, allow_modified: args.allow_modified, ..Default::default() };
    let mut m = OrtDenoiser::open_with(&args.model, &config)?;
    if let Some(note) = m.integrity_note() {
        eprintln!("{note}");
    }
    let info = m.info().clone();
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!(
        "{}: {}x{}x{}, {} T={}, weights {}; onnxruntime {} on {}, {threads} threads",
        args.model.display(),
        info.channels,
        info.height,
        info.width,
        info.schedule.name,
        info.schedule.timesteps,
        info.weights,
        runtime::discover::loaded_library()?.display(),
        args.device
    );
    let (warmup, iters) = (args.warmup.max(3) as usize, args.iters as usize);
    let mut batches = vec![1, args.batch as usize];
    batches.dedup();
    for batch in batches {
        let t = runtime::bench::time_forward(&mut m, batch, warmup, iters)?;
        let cpu = t.cpu_ms.map(|c| format!(", CPU {c:.2} ms/call")).unwrap_or_default();
        println!(
            "  forward batch {batch:>3}: median {:8.2} ms (min {:.2}, max {:.2}), {:7.1} images/s{cpu}",
            t.wall.median_ms,
            t.wall.min_ms,
            t.wall.max_ms,
            t.images_per_second()
        );
    }
    if args.sample_steps > 0 {
        let s = runtime::bench::time_sampling(&mut m, args.batch as usize, args.sample_steps)?;
        println!(
            "  sampling: DDIM {} steps, {} images at once: {:.2} s, {:.2} images/s",
            s.steps,
            s.images,
            s.seconds,
            s.images_per_second()
        );
    }
    Ok(ExitCode::SUCCESS)
}
