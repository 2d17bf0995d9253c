//! Command-line interface: clap definitions and dispatch. Each command lives in its own module
//! with `Args` and `run(&Args) -> anyhow::Result<ExitCode>`.

pub mod bench;
pub mod check;
pub mod eval;
pub mod export;
mod export_step;
mod export_torch;
pub mod graph;
mod guide;
pub mod sample;
mod source;
pub mod train;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::model::ModelError;

/// Compile a diffusion U-Net written as a TOML graph of blocks.
#[derive(Debug, Parser)]
#[command(name = "mdc", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Parse and shape-check model files; print a per-block table or every error found.
    Check(check::Args),
    /// Write a model's block graph as Graphviz DOT (and SVG when `dot` is installed).
    Graph(graph::Args),
    /// Train a model with DDPM on the built-in digits, an IDX file or a folder of images.
    Train(train::Args),
    /// Generate images from a trained checkpoint (DDPM, DDIM or DPM-Solver++), as a PNG grid.
    Sample(sample::Args),
    /// Export a model and its weights: `mdc export onnx MODEL.toml --weights CKPT -o model.onnx`, or
    /// as PyTorch: `mdc export torch MODEL.toml -o model.py --train`.
    Export(export::Args),
    /// Time the interpreter: forward and training-step medians, images/s, GFLOP/s, peak memory.
    Bench(bench::Args),
    /// Score generated images: recognised by a classifier, class histogram, Fréchet distance, near-copies.
    Eval(eval::Args),
}

pub fn run(cli: &Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Check(args) => check::run(args),
        Command::Graph(args) => graph::run(args),
        Command::Train(args) => train::run(args),
        Command::Sample(args) => sample::run(args),
        Command::Export(args) if args.format == export::Format::TrainStep => export_step::run(args),
        Command::Export(args) => export::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Eval(args) => eval::run(args),
    }
}

/// Exit codes: 0 success, 1 the model (or the run) failed, 2 usage or I/O error.
pub const EXIT_MODEL_ERRORS: u8 = 1;
pub const EXIT_USAGE_OR_IO: u8 = 2;

/// A command line that cannot work as given (a bad flag value, a missing file a flag needs):
/// exits with [`EXIT_USAGE_OR_IO`], like the usage errors clap reports.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Prints an error that ended a command and picks the exit code: a model's report as it is,
/// anything else as `error: ...` with its causes.
pub fn report_error(e: &anyhow::Error) -> ExitCode {
    if let Some(m) = e.downcast_ref::<ModelError>() {
        eprintln!("{m}");
        return ExitCode::from(m.exit_code());
    }
    eprintln!("error: {e:#}");
    let io = e.chain().any(|c| c.is::<std::io::Error>() || c.is::<UsageError>() || damaged_file(c));
    ExitCode::from(if io { EXIT_USAGE_OR_IO } else { EXIT_MODEL_ERRORS })
}

/// A file that cannot be read or is damaged (a weights file, a checkpoint): an I/O error.
fn damaged_file(e: &(dyn std::error::Error + 'static)) -> bool {
    use crate::params::WeightsError;
    use crate::train::CheckpointError;
    matches!(e.downcast_ref(), Some(WeightsError::Io { .. } | WeightsError::Corrupt { .. }))
        || matches!(e.downcast_ref(), Some(CheckpointError::Io { .. } | CheckpointError::Corrupt { .. }))
}
