//! Loading a model file: read, parse, build and check, in one call every command uses.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::check::{self, BlockRow};
use crate::dsl::{Diagnostic, Report};
use crate::graph::Graph;

/// A model file that checked clean.
#[derive(Debug, Clone)]
pub struct Model {
    pub path: PathBuf,
    pub source: String,
    /// sha256 (hex) of the file's bytes: identifies the architecture in checkpoints.
    pub hash: String,
    pub graph: Graph,
    /// The `[train]` section (every setting already checked against `recipe::SETTINGS`).
    pub train: Option<toml::Table>,
    /// `[model] name`, when given.
    pub name: Option<String>,
    /// `[condition] drop` of a class-conditional model (its classes are `graph.classes()`).
    pub label_drop: Option<f64>,
    /// The per-block table (shapes, params, FLOPs, activations).
    pub table: Vec<BlockRow>,
    /// Warnings (the model is sound, but, e.g., a block's output is never used).
    pub warnings: Vec<Diagnostic>,
}

impl Model {
    /// The warnings rendered like `mdc check` prints them (empty when there are none).
    pub fn warnings_report(&self) -> Report {
        Report {
            path: self.path.display().to_string(),
            source: self.source.clone(),
            diagnostics: self.warnings.clone(),
        }
    }
}

/// Why a model could not be loaded. Displaying it shows the whole report.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The file could not be read (exit code 2).
    #[error("cannot read model file {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// The model has errors (exit code 1); every diagnostic is in the report.
    #[error("{report}")]
    Invalid { report: Box<Report> },
}

impl ModelError {
    /// The process exit code this error means: 2 for I/O, 1 for a model with errors.
    pub fn exit_code(&self) -> u8 {
        match self {
            ModelError::Io { .. } => 2,
            ModelError::Invalid { .. } => 1,
        }
    }
}

/// Reads and checks a model file.
pub fn load(path: &Path) -> Result<Model, ModelError> {
    let bytes = std::fs::read(path).map_err(|source| ModelError::Io { path: path.to_path_buf(), source })?;
    from_bytes(path, &bytes)
}

/// Checks a model given as bytes (`path` is only used in messages).
pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Model, ModelError> {
    let hash = hex(&Sha256::digest(bytes));
    let source = match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(e) => return Err(not_utf8(path, bytes, &e)),
    };
    let checked = check::check(&source);
    if checked.has_errors() {
        let report = Report { path: path.display().to_string(), source, diagnostics: checked.diagnostics };
        return Err(ModelError::Invalid { report: Box::new(report) });
    }
    let (Some(graph), Some(file)) = (checked.graph, checked.file) else {
        unreachable!("a check without errors yields a graph")
    };
    Ok(Model {
        path: path.to_path_buf(),
        source,
        hash,
        graph,
        train: file.train.map(|t| t.table()),
        name: file.name,
        label_drop: file.condition.map(|c| c.drop.value),
        table: checked.table,
        warnings: checked.diagnostics,
    })
}

/// A report for a file that is not UTF-8, pointing at the first bad byte.
pub fn not_utf8(path: &Path, bytes: &[u8], e: &std::str::Utf8Error) -> ModelError {
    // Show the valid prefix so the caret lands on the right line.
    let valid = e.valid_up_to();
    let source = String::from_utf8_lossy(&bytes[..valid]).into_owned();
    let d = Diagnostic::error("the file is not valid UTF-8 text", valid..valid)
        .found(format!("the byte 0x{:02x}", bytes[valid]))
        .help("model files are TOML, which must be UTF-8");
    let report = Report { path: path.display().to_string(), source, diagnostics: vec![d] };
    ModelError::Invalid { report: Box::new(report) }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
