//! `mdc check FILE...`: parse, build and shape-check model files; print the per-block table or
//! every error found. Exit 0 when every file is sound (warnings allowed), 1 when a model has
//! errors, 2 when a file cannot be read.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use serde_json::json;

use crate::check::{self, table, Checked};
use crate::dsl::Report;
use crate::model::{self, ModelError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Model files (TOML) to check.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// `json` prints the findings and the table for tools (an array when given several files).
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

/// What checking one file gave.
enum Outcome {
    Unreadable(ModelError),
    Checked { report: Report, checked: Option<Box<Checked>>, millis: f64 },
}

impl Outcome {
    fn exit_code(&self) -> u8 {
        match self {
            Outcome::Unreadable(e) => e.exit_code(),
            Outcome::Checked { report, .. } => u8::from(report.has_errors()),
        }
    }
}

fn check_file(path: &Path) -> Outcome {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(source) => return Outcome::Unreadable(ModelError::Io { path: path.to_path_buf(), source }),
    };
    let start = Instant::now();
    let source = match std::str::from_utf8(&bytes) {
        Ok(s) => s.to_string(),
        Err(e) => {
            return match model::not_utf8(path, &bytes, &e) {
                ModelError::Invalid { report } => {
                    Outcome::Checked { report: *report, checked: None, millis: 0.0 }
                }
                io => Outcome::Unreadable(io),
            }
        }
    };
    let checked = check::check(&source);
    let millis = start.elapsed().as_secs_f64() * 1e3;
    let report =
        Report { path: path.display().to_string(), source, diagnostics: checked.diagnostics.clone() };
    Outcome::Checked { report, checked: Some(Box::new(checked)), millis }
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let outcomes: Vec<Outcome> = args.files.iter().map(|f| check_file(f)).collect();
    match args.format {
        Format::Text => {
            for (i, o) in outcomes.iter().enumerate() {
                if i > 0 {
                    println!();
                }
                print_text(o);
            }
        }
        Format::Json => {
            let mut docs: Vec<serde_json::Value> =
                args.files.iter().zip(&outcomes).map(|(f, o)| to_json(f, o)).collect();
            let doc = if docs.len() == 1 { docs.remove(0) } else { serde_json::Value::Array(docs) };
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
    }
    let code = outcomes.iter().map(Outcome::exit_code).max().unwrap_or(0);
    Ok(ExitCode::from(code))
}

fn print_text(o: &Outcome) {
    let (report, checked, millis) = match o {
        Outcome::Unreadable(e) => {
            eprintln!("error: {e}");
            return;
        }
        Outcome::Checked { report, checked, millis } => (report, checked, millis),
    };
    if !report.diagnostics.is_empty() {
        let text = if std::io::stderr().is_terminal() { report.render_styled() } else { report.render() };
        eprintln!("{text}");
    }
    let graph = checked.as_ref().and_then(|c| c.graph.as_ref());
    match (report.has_errors(), graph, checked) {
        (false, Some(g), Some(c)) => {
            let name = c.file.as_ref().and_then(|f| f.name.as_deref()).unwrap_or("model");
            let labels = g.label_input().map_or(String::new(), |l| {
                let hidden = match l.hide_below {
                    0 => String::new(),
                    t => format!(", hidden at t < {t}"),
                };
                format!(
                    ", class labels y [N] (0-{}, {} = no label{hidden})",
                    l.classes.saturating_sub(1),
                    l.classes
                )
            });
            println!(
                "{}: {name}, input {}{labels} -> output {}",
                report.path,
                g.input_shape(),
                g.output_shape()
            );
            println!();
            print!("{}", table::render(&c.table));
            println!();
            println!(
                "ok: {} blocks, {} parameters, {} ({:.1} ms)",
                c.table.len(),
                table::group_digits(g.param_count() as u64),
                report.summary().split(", ").nth(1).unwrap_or("0 warnings"),
                millis
            );
        }
        _ => eprintln!("error: {} is not a sound model: {}", report.path, report.summary()),
    }
}

fn to_json(path: &Path, o: &Outcome) -> serde_json::Value {
    match o {
        Outcome::Unreadable(e) => json!({
            "file": path.display().to_string(),
            "ok": false,
            "io_error": e.to_string(),
        }),
        Outcome::Checked { report, checked, millis } => {
            let graph = checked.as_ref().and_then(|c| c.graph.as_ref());
            let rows = checked.as_ref().map(|c| c.table.as_slice()).unwrap_or_default();
            json!({
                "file": report.path,
                "ok": !report.has_errors(),
                "name": checked.as_ref().and_then(|c| c.file.as_ref()).and_then(|f| f.name.clone()),
                "errors": report.errors(),
                "warnings": report.warnings(),
                "diagnostics": report.located(),
                "input_shape": graph.map(|g| g.input_shape().0.clone()),
                "output_shape": graph.map(|g| g.output_shape().0.clone()),
                "blocks": rows,
                "totals": graph.map(|_| table::totals(rows)),
                "check_ms": millis,
            })
        }
    }
}
