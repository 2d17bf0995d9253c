//! Training checkpoints: one safetensors file holding the weights (`model.*`), their EMA
//! (`ema.*`) and the AdamW moments (`adam_m.*`, `adam_v.*`), with everything else a resumed run
//! needs in the string metadata (its layout and reader: [`crate::params::CheckpointInfo`]).

use std::path::Path;

use super::TrainConfig;
use crate::graph::Graph;
use crate::params::{checkpoint_bytes, CheckpointInfo, Params, WeightsError, WeightsFile, CHECKPOINT_FORMAT};

/// The file name of a run's checkpoint inside its output folder.
pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";

#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// Steps completed.
    pub step: u64,
    pub model: Params,
    pub ema: Params,
    pub adam_m: Params,
    pub adam_v: Params,
    /// State of the generator that draws timesteps and noise.
    pub rng: [u64; 4],
    /// Data order state: (epoch, position within it).
    pub data_epoch: u64,
    pub data_position: usize,
    /// SHA-256 of the model file the run trains.
    pub model_hash: String,
    pub config: TrainConfig,
    /// A conditional model's class names in label order, when the data named them (folders).
    pub class_names: Vec<String>,
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
    /// Writes the checkpoint atomically (a crash leaves the previous one intact).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let info = CheckpointInfo {
            step: self.step,
            rng: self.rng,
            data_epoch: self.data_epoch,
            data_position: self.data_position,
            model_hash: self.model_hash.clone(),
            config: self.config.clone(),
            class_names: self.class_names.clone(),
            guide_step: self.guide.as_ref().map(|g| g.step),
            mdc_version: env!("CARGO_PKG_VERSION").to_string(),
        };
        let parts = [&self.model, &self.ema, &self.adam_m, &self.adam_v];
        let bytes = checkpoint_bytes(&info, parts, self.guide.as_ref().map(|g| &g.weights));
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
        let guide = file
            .guide(graph)
            .map_err(CheckpointError::from_weights)?
            .map(|(step, weights)| Guide { step, weights });
        Ok(Checkpoint {
            step: info.step,
            model: weights,
            ema,
            adam_m,
            adam_v,
            rng: info.rng,
            data_epoch: info.data_epoch,
            data_position: info.data_position,
            model_hash: model_hash.to_string(),
            config: info.config.clone(),
            class_names: info.class_names.clone(),
            guide,
        })
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
