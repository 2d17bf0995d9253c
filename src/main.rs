//! The `mdc` command line: one subcommand per file in `src/cli/`.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = mdc::cli::Cli::parse();
    match mdc::cli::run(&cli) {
        Ok(code) => code,
        Err(e) => mdc::cli::report_error(&e),
    }
}
