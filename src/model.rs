//! TEMP (train branch): stand-in for the DSL branch's `model::load` so `mdc train` can run
//! before the merge. It builds the default mini U-Net whatever the file says; the DSL branch's
//! model.rs replaces it on merge.

use std::path::{Path, PathBuf};

use sha2::Digest;

use crate::graph::Graph;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ModelError(String);

pub struct Model {
    pub path: PathBuf,
    pub source: String,
    pub hash: String,
    pub graph: Graph,
    pub train: Option<toml::Table>,
}

pub fn load(path: &Path) -> Result<Model, ModelError> {
    let source = std::fs::read_to_string(path)
        .map_err(|e| ModelError(format!("cannot read {}: {e}", path.display())))?;
    let table: toml::Table = source.parse().map_err(|e| ModelError(format!("{}: {e}", path.display())))?;
    let train = table.get("train").and_then(|v| v.as_table()).cloned();
    let hash = format!("{:x}", sha2::Sha256::digest(source.as_bytes()));
    let graph = crate::graph::blocks::mini_unet(1, 28, [32, 64, 128, 128], 8, 32, 128)
        .map_err(|e| ModelError(e.message))?;
    Ok(Model { path: path.to_path_buf(), source, hash, graph, train })
}
