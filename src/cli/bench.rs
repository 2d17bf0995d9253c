//! `mdc bench MODEL --batch N`: times the interpreter on a model file (forward at N images,
//! a training step at `--train-batch` images, default N) and prints medians, images/s, GFLOP/s
//! and peak memory.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::bench::{self, BenchOptions};
use crate::model;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Model file (TOML).
    #[arg(value_name = "MODEL")]
    pub model: PathBuf,
    /// Images per forward pass.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch: u64,
    /// Images per training step (forward, backward, AdamW); defaults to --batch.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
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
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let model = model::load(&args.model)?;
    let opts = BenchOptions {
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
