//! Training checkpoints: one safetensors file holding the weights (`model.*`), their EMA
//! (`ema.*`) and the AdamW moments (`adam_m.*`, `adam_v.*`), with everything else a resumed run
//! needs in the string metadata (layout fixed by [`crate::params::CHECKPOINT_FORMAT`]).

use std::collections::HashMap;
use std::path::Path;

use super::TrainConfig;
use crate::diffusion::{Prediction, Steering};
use crate::graph::Graph;
use crate::params::{
    tensors_digest, Params, WeightsError, CHECKPOINT_DIGEST, CHECKPOINT_FORMAT, CHECKPOINT_GUIDE,
    CHECKPOINT_PARTS as PARTS, GUIDE_DIGEST, GUIDE_STEP,
};

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

/// What the network of a weights file predicts, by its metadata: a checkpoint records it; one
/// from before the setting existed predicts the noise; None for a file that says nothing (plain
/// weights: the model file's [train] decides).
pub fn recorded_prediction(meta: &HashMap<String, String>) -> Result<Option<Prediction>, String> {
    match meta.get("prediction") {
        Some(p) => Prediction::parse(p)
            .map(Some)
            .ok_or_else(|| format!("unknown prediction {p:?} in metadata (expected noise or velocity)")),
        None => {
            let checkpoint = meta.get("format").map(String::as_str) == Some(CHECKPOINT_FORMAT);
            Ok(checkpoint.then_some(Prediction::Noise))
        }
    }
}

/// The autoguidance a checkpoint's recipe sets (weight 1, the model alone, when it has none).
pub fn recorded_autoguidance(meta: &HashMap<String, String>) -> Steering {
    let config: Option<TrainConfig> = meta.get("config").and_then(|c| serde_json::from_str(c).ok());
    config.map_or(Steering::everywhere(1.0), |c| c.steering())
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
        let parts = [&self.model, &self.ema, &self.adam_m, &self.adam_v];
        let mut views = Vec::new();
        for (prefix, p) in PARTS.iter().zip(parts) {
            views.extend(p.named_views(prefix));
        }
        if let Some(g) = &self.guide {
            views.extend(g.weights.named_views(CHECKPOINT_GUIDE));
        }
        let meta: HashMap<String, String> =
            [
                ("format", CHECKPOINT_FORMAT.to_string()),
                ("step", self.step.to_string()),
                ("rng", self.rng.iter().map(|v| format!("{v:016x}")).collect::<Vec<_>>().join(",")),
                ("data_epoch", self.data_epoch.to_string()),
                ("data_position", self.data_position.to_string()),
                ("model_hash", self.model_hash.clone()),
                ("schedule", self.config.schedule.to_string()),
                ("timesteps", self.config.timesteps.to_string()),
                ("prediction", self.config.prediction.to_string()),
                ("config", serde_json::to_string(&self.config).expect("config serialises")),
                (CHECKPOINT_DIGEST, tensors_digest(parts)),
                ("mdc_version", env!("CARGO_PKG_VERSION").to_string()),
            ]
            .into_iter()
            .chain((!self.class_names.is_empty()).then(|| {
                ("class_names", serde_json::to_string(&self.class_names).expect("strings serialise"))
            }))
            .chain(
                self.guide
                    .iter()
                    .flat_map(|g| [(GUIDE_STEP, g.step.to_string()), (GUIDE_DIGEST, g.weights.digest())]),
            )
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let bytes = safetensors::serialize(views, Some(meta)).expect("f32 tensors serialise");
        crate::base::fsutil::write_atomic(path, &bytes)
    }

    /// Reads and fully validates a checkpoint for the model file `model` (its graph and
    /// sha256): structure, metadata, the model hash, every tensor's name and shape, and a digest
    /// of the tensor data (so flipped bytes are caught too).
    pub fn load(
        path: &Path,
        graph: &Graph,
        model_hash: &str,
        model: &str,
    ) -> Result<Checkpoint, CheckpointError> {
        let origin = path.display().to_string();
        let bytes =
            std::fs::read(path).map_err(|source| CheckpointError::Io { path: origin.clone(), source })?;
        let corrupt = |reason: String| CheckpointError::Corrupt { path: origin.clone(), reason };
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| corrupt(format!("not a valid safetensors file ({e})")))?;
        let meta = header.metadata().clone().unwrap_or_default();
        if meta.get("format").map(String::as_str) != Some(CHECKPOINT_FORMAT) {
            return Err(CheckpointError::NotACheckpoint { path: origin });
        }
        let field = |k: &str| meta.get(k).ok_or_else(|| corrupt(format!("metadata `{k}` is missing")));
        let number = |k: &str| -> Result<u64, CheckpointError> {
            field(k)?.parse().map_err(|_| corrupt(format!("metadata `{k}` = {:?} is not a number", meta[k])))
        };
        let step = number("step")?;
        let data_epoch = number("data_epoch")?;
        let data_position = number("data_position")? as usize;
        let rng_text = field("rng")?;
        let rng: [u64; 4] = rng_text
            .split(',')
            .map(|s| u64::from_str_radix(s, 16).ok())
            .collect::<Option<Vec<u64>>>()
            .and_then(|words| words.try_into().ok())
            .ok_or_else(|| corrupt(format!("metadata `rng` = {rng_text:?} is not four hex numbers")))?;
        let found = field("model_hash")?.clone();
        if found != model_hash {
            return Err(CheckpointError::OtherModel {
                path: origin,
                model: model.to_string(),
                found,
                expected: model_hash.to_string(),
            });
        }
        let config: TrainConfig = serde_json::from_str(field("config")?)
            .map_err(|e| corrupt(format!("metadata `config` is not a valid training recipe ({e})")))?;
        config.check_ranges().map_err(|e| corrupt(format!("metadata `config`: {e}")))?;
        let class_names: Vec<String> = match meta.get("class_names") {
            None => Vec::new(),
            Some(v) => serde_json::from_str(v)
                .map_err(|e| corrupt(format!("metadata `class_names` is not a JSON list of names ({e})")))?,
        };
        let [weights, ema, adam_m, adam_v] = Params::checkpoint_parts(&bytes, &meta, graph, &origin)?;
        let guide = Params::checkpoint_guide(&bytes, &meta, graph, &origin)?
            .map(|(step, weights)| Guide { step, weights });
        Ok(Checkpoint {
            step,
            model: weights,
            ema,
            adam_m,
            adam_v,
            rng,
            data_epoch,
            data_position,
            model_hash: model_hash.to_string(),
            config,
            class_names,
            guide,
        })
    }
}
