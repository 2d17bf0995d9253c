//! Command-line interface: clap definitions and dispatch. Each command lives in its own module
//! with `Args` and `run(&Args) -> anyhow::Result<ExitCode>`.

pub mod sample;
pub mod train;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Compile a diffusion U-Net written as a TOML graph of blocks.
#[derive(Debug, Parser)]
#[command(name = "mdc", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train a model with DDPM on the built-in digits, an IDX file or a folder of images.
    Train(train::Args),
    /// Generate images from a trained checkpoint (DDPM or DDIM), as a PNG grid.
    Sample(sample::Args),
}

pub fn run(cli: &Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Train(args) => train::run(args),
        Command::Sample(args) => sample::run(args),
    }
}

/// Exit codes: 0 success, 1 the model (or the run) failed, 2 usage or I/O error.
pub const EXIT_MODEL_ERRORS: u8 = 1;
pub const EXIT_USAGE_OR_IO: u8 = 2;

/// Prints an error that ended a command as `error: ...` with its causes, and picks the exit code.
pub fn report_error(e: &anyhow::Error) -> ExitCode {
    eprintln!("error: {e:#}");
    let io = e.chain().any(|c| c.is::<std::io::Error>());
    ExitCode::from(if io { EXIT_USAGE_OR_IO } else { EXIT_MODEL_ERRORS })
}
