//! `mdc graph FILE [-o out.dot]`: the model's block graph as Graphviz DOT, shapes on the edges;
//! also SVG when Graphviz's `dot` is installed.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::Context;

use crate::base::fsutil::write_file;
use crate::check::dot;
use crate::model;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The model file (TOML).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Where to write the DOT (default: standard output). With `dot` on PATH an SVG is written
    /// beside it (`out.dot` -> `out.svg`); a name ending in `.svg` writes only the SVG.
    #[arg(short, long, value_name = "OUT")]
    pub output: Option<PathBuf>,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let m = model::load(&args.file)?;
    if !m.warnings.is_empty() {
        eprintln!("{}", m.warnings_report().render());
    }
    let title = m.name.clone().unwrap_or_else(|| "model".into());
    let text = dot::to_dot(&m.graph, &m.table, &title);
    let Some(out) = &args.output else {
        print!("{text}");
        return Ok(ExitCode::SUCCESS);
    };
    let wants_svg_only = out.extension().is_some_and(|e| e == "svg");
    if !wants_svg_only {
        write_file(out, text.as_bytes())?;
        eprintln!("wrote {}", out.display());
    }
    let svg = out.with_extension("svg");
    match render_svg(&text)? {
        Some(bytes) => {
            write_file(&svg, &bytes)?;
            eprintln!("wrote {}", svg.display());
        }
        None if wants_svg_only => {
            anyhow::bail!(
                "cannot write {}: Graphviz `dot` is not installed (install graphviz, or write DOT with `-o {}`)",
                svg.display(),
                Path::new(out).with_extension("dot").display()
            );
        }
        None => eprintln!(
            "note: Graphviz `dot` is not installed, so no SVG was written (install graphviz for one)"
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `dot -Tsvg`; `None` when `dot` is not on PATH.
fn render_svg(dot_text: &str) -> anyhow::Result<Option<Vec<u8>>> {
    use std::io::Write;
    let child = Command::new("dot")
        .arg("-Tsvg")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).context("cannot run `dot`"),
    };
    child.stdin.take().expect("piped stdin").write_all(dot_text.as_bytes()).context("cannot feed `dot`")?;
    let out = child.wait_with_output().context("`dot` failed")?;
    if !out.status.success() {
        anyhow::bail!("`dot -Tsvg` failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(Some(out.stdout))
}
