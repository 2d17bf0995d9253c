//! Training checkpoints: one safetensors file holding the weights (`model.*`), their EMA
//! (`ema.*`) and the AdamW moments (`adam_m.*`, `adam_v.*`), with everything else a resumed run
//! needs in the string metadata (its layout and reader: [`crate::params::CheckpointInfo`]).

use std::path::Path;

use crate::graph::Graph;
use crate::params::{checkpoint_bytes, CheckpointInfo, Params, WeightsError, WeightsFile, CHECKPOINT_FORMAT};

/// The file name of a run's checkpoint inside its output folder.
pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";

/// A training run's whole state: its metadata and its tensors.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// Step, generator and data order, model hash, recipe, class names, guide step. Its
    /// `guide_step` must be `guide`'s step ([`Checkpoint::save`] refuses a pair that disagrees).
    pub info: CheckpointInfo,
    pub model: Params,
    pub ema: Params,
    pub adam_m: Params,
    pub adam_v: Params,
    /// The autoguidance guide, once the run has passed `guide_at`.
    pub guide: Option<Guide>,
}

/// The weaker model that autoguidance steers away from (Karras et al. 2024): the EMA weights as
/// they were early in the same run.
#[derive(Debug, Clone, PartialEq)]
pub struct Guide {
    /// The step whose EMA weights these are.
    pub step: u64,
    pub weights: Params,
}

/// What is wrong with a checkpoint file, in terms a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot read checkpoint {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("checkpoint {path} is corrupt: {reason}\n  hint: it may have been cut short or edited; use an earlier copy or start a new run")]
    Corrupt { path: String, reason: String },
    #[error("{path} is not a training checkpoint (no `format = {CHECKPOINT_FORMAT}` metadata); --resume needs the {CHECKPOINT_FILE} that `mdc train` writes")]
    NotACheckpoint { path: String },
    #[error("checkpoint {path} was trained from a different model file (sha256 {found:.12}...; {model} is now {expected:.12}...)\n  a run resumes only with the exact model file it started with: restore that file, or start a new run (another --out, or --overwrite)")]
    OtherModel { path: String, model: String, found: String, expected: String },
    #[error(transparent)]
    Weights(#[from] WeightsError),
}

impl Checkpoint {
    /// Writes the checkpoint atomically (a crash leaves the previous one intact). A guide whose
    /// step is not `info.guide_step` is an error: the file would name the wrong step for its
    /// guide's weights.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let guide_step = self.guide.as_ref().map(|g| g.step);
        if self.info.guide_step != guide_step {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "the checkpoint's guide step {:?} is not its guide's step {guide_step:?}",
                    self.info.guide_step
                ),
            ));
        }
        let parts = [&self.model, &self.ema, &self.adam_m, &self.adam_v];
        let bytes = checkpoint_bytes(&self.info, parts, self.guide.as_ref().map(|g| &g.weights));
        crate::base::fsutil::write_atomic(path, &bytes)
    }

    /// Reads and fully validates a checkpoint for the model file `model` (its graph and
    /// sha256): structure, metadata, the model hash, every tensor's name and shape, and the
    /// digests of the metadata and the tensor data (so flipped bytes are caught too).
    pub fn load(
        path: &Path,
        graph: &Graph,
        model_hash: &str,
        model: &str,
    ) -> Result<Checkpoint, CheckpointError> {
        let file = WeightsFile::open(path).map_err(CheckpointError::from_weights)?;
        let Some(info) = file.checkpoint() else {
            return Err(CheckpointError::NotACheckpoint { path: file.origin().to_string() });
        };
        if info.model_hash != model_hash {
            return Err(CheckpointError::OtherModel {
                path: file.origin().to_string(),
                model: model.to_string(),
                found: info.model_hash.clone(),
                expected: model_hash.to_string(),
            });
        }
        let [weights, ema, adam_m, adam_v] = file.parts(graph).map_err(CheckpointError::from_weights)?;
        // The file's guide step is `info.guide_step`, so the pair agrees.
        let guide = file
            .guide(graph)
            .map_err(CheckpointError::from_weights)?
            .map(|(step, weights)| Guide { step, weights });
        Ok(Checkpoint { info: info.clone(), model: weights, ema, adam_m, adam_v, guide })
    }
}

impl CheckpointError {
    /// A weights-file error as a checkpoint error: damage and I/O keep their checkpoint wording.
    fn from_weights(e: WeightsError) -> CheckpointError {
        match e {
            WeightsError::Io { path, source } => CheckpointError::Io { path, source },
            WeightsError::Corrupt { path, reason } => CheckpointError::Corrupt { path, reason },
            other => CheckpointError::Weights(other),
        }
    }
}
