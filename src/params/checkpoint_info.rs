//! What a training checkpoint's string metadata says, typed: one writer ([`CheckpointInfo::to_metadata`])
//! and one reader ([`CheckpointInfo::from_metadata`]) so that the keys are spelled in one place.
//!
//! A checkpoint is one safetensors file: the tensors of [`CHECKPOINT_PARTS`] (and [`CHECKPOINT_GUIDE`]
//! when the run keeps a guide), named `<prefix><node>.<param>`, and the metadata of [`keys`].
//!
//! Format versions ([`FormatVersion`]):
//! - `mdc-checkpoint-v1`: the tensors are covered by `tensors_sha256` (and `guide_sha256`), the
//!   metadata by nothing. Files from before a setting existed lack it; the reader gives them the
//!   setting's legacy value (`prediction` absent: noise; a recipe key absent: its legacy value).
//! - `mdc-checkpoint-v2` (written now): the same keys, every one required except `class_names`
//!   and the guide's pair, plus `metadata_sha256` ([`metadata_digest`]) over all the others, so a
//!   damaged key or value is an error, never read as an older file.

use std::collections::HashMap;

use crate::diffusion::{Prediction, ScheduleKind};
// The training recipe (layer 2 once it moves to `crate::recipe`).
use crate::recipe::TrainConfig;

/// The `format` value of the checkpoints mdc writes now.
pub const CHECKPOINT_FORMAT: &str = FormatVersion::CURRENT.name();

/// Tensor name prefixes of a training checkpoint's parameter sets: the weights, their EMA and
/// the AdamW moments, in the order [`tensors_digest`] hashes them.
pub const CHECKPOINT_MODEL: &str = "model.";
pub const CHECKPOINT_EMA: &str = "ema.";
pub const CHECKPOINT_PARTS: [&str; 4] = [CHECKPOINT_MODEL, CHECKPOINT_EMA, "adam_m.", "adam_v."];

/// The optional fifth parameter set of a checkpoint: the autoguidance guide, the EMA weights as
/// they were at step `guide_step`, with their own digest under `guide_sha256`.
pub const CHECKPOINT_GUIDE: &str = "guide.";

/// A checkpoint's metadata keys.
pub mod keys {
    /// [`super::FormatVersion`]'s name.
    pub const FORMAT: &str = "format";
    /// Steps completed, decimal.
    pub const STEP: &str = "step";
    /// The generator's state: four u64 as 16-digit lowercase hex, comma-separated.
    pub const RNG: &str = "rng";
    /// Data order: the epoch and the position within it, decimal.
    pub const DATA_EPOCH: &str = "data_epoch";
    pub const DATA_POSITION: &str = "data_position";
    /// SHA-256 (hex) of the model file the run trains.
    pub const MODEL_HASH: &str = "model_hash";
    /// The recipe's `schedule`, `timesteps` and `prediction`, repeated from `config` for other
    /// readers (they must agree with it).
    pub const SCHEDULE: &str = "schedule";
    pub const TIMESTEPS: &str = "timesteps";
    pub const PREDICTION: &str = "prediction";
    /// The whole training recipe as JSON (every setting by name).
    pub const CONFIG: &str = "config";
    /// [`super::tensors_digest`] of the four parts.
    pub const TENSORS_SHA256: &str = "tensors_sha256";
    /// Version of the mdc that wrote the file.
    pub const MDC_VERSION: &str = "mdc_version";
    /// A conditional model's class names in label order as a JSON list; absent when unnamed.
    pub const CLASS_NAMES: &str = "class_names";
    /// Only when a guide is kept: the step of its EMA weights (decimal) and their digest.
    pub const GUIDE_STEP: &str = "guide_step";
    pub const GUIDE_SHA256: &str = "guide_sha256";
    /// Version 2 on: [`super::metadata_digest`] of every other key.
    pub const METADATA_SHA256: &str = "metadata_sha256";
}

/// The checkpoint format versions mdc reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FormatVersion {
    /// Tensor digests only; settings added later may be absent (their legacy values apply).
    V1,
    /// Adds the metadata digest; every key is required.
    V2,
}

impl FormatVersion {
    pub const CURRENT: FormatVersion = FormatVersion::V2;

    pub const fn name(self) -> &'static str {
        match self {
            FormatVersion::V1 => "mdc-checkpoint-v1",
            FormatVersion::V2 => "mdc-checkpoint-v2",
        }
    }

    pub fn parse(s: &str) -> Option<FormatVersion> {
        [FormatVersion::V1, FormatVersion::V2].into_iter().find(|v| v.name() == s)
    }
}

/// Everything a checkpoint records besides its tensors.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointInfo {
    /// Steps completed.
    pub step: u64,
    /// State of the generator that draws timesteps and noise.
    pub rng: [u64; 4],
    /// Data order state: (epoch, position within it).
    pub data_epoch: u64,
    pub data_position: usize,
    /// SHA-256 of the model file the run trains.
    pub model_hash: String,
    /// The training recipe (its schedule, timesteps and prediction are the network's).
    pub config: TrainConfig,
    /// A conditional model's class names in label order, when the data named them.
    pub class_names: Vec<String>,
    /// The step whose EMA weights the file keeps as the autoguidance guide (None: no guide).
    pub guide_step: Option<u64>,
    /// Version of the mdc that wrote the file.
    pub mdc_version: String,
}

/// The tensor digests a checkpoint records ([`tensors_digest`] of the four parts, and the
/// guide's [`tensors_digest`] when it keeps one).
#[derive(Debug, Clone, PartialEq)]
pub struct TensorDigests {
    pub parts: String,
    pub guide: Option<String>,
}

/// SHA-256 (lowercase hex) over the little-endian f32 bytes of every tensor of the four
/// [`CHECKPOINT_PARTS`] in that order, each part in the graph's parameter order
/// ([`crate::graph::Graph::params`]): `tensors_sha256`. The guide's `guide_sha256` is the same
/// over the guide alone ([`super::Params::digest`]). Unchanged since format version 1.
pub fn tensors_digest(parts: [&super::Params; 4]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in parts {
        p.hash_into(&mut h);
    }
    format!("{:x}", h.finalize())
}

/// The metadata digest of format version 2, stored under `metadata_sha256`: the lowercase hex
/// SHA-256 of every other metadata entry, taken in ascending order of the keys' UTF-8 bytes
/// (which is also code-point order), each entry fed to the hash as
///
/// ```text
/// len(key) as u64 little-endian ‖ key as UTF-8 ‖ len(value) as u64 little-endian ‖ value as UTF-8
/// ```
///
/// with lengths in bytes and no separator between entries. The tensors are covered through the
/// entries `tensors_sha256` and `guide_sha256`. In Python:
///
/// ```text
/// h = hashlib.sha256()
/// for k in sorted(k for k in meta if k != "metadata_sha256"):
///     kb, vb = k.encode(), meta[k].encode()
///     h.update(struct.pack("<Q", len(kb)) + kb + struct.pack("<Q", len(vb)) + vb)
/// meta["metadata_sha256"] = h.hexdigest()
/// ```
pub fn metadata_digest(meta: &HashMap<String, String>) -> String {
    use sha2::{Digest, Sha256};
    let mut entries: Vec<(&String, &String)> =
        meta.iter().filter(|(k, _)| k.as_str() != keys::METADATA_SHA256).collect();
    entries.sort();
    let mut h = Sha256::new();
    for (k, v) in entries {
        for bytes in [k.as_bytes(), v.as_bytes()] {
            h.update((bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        }
    }
    format!("{:x}", h.finalize())
}

impl CheckpointInfo {
    /// The metadata of a checkpoint in the current format ([`FormatVersion::CURRENT`]), with
    /// `digests` of its tensors.
    pub fn to_metadata(&self, digests: &TensorDigests) -> HashMap<String, String> {
        use keys::*;
        assert_eq!(self.guide_step.is_some(), digests.guide.is_some(), "a guide step goes with a guide");
        let c = &self.config;
        let mut meta: HashMap<String, String> = [
            (FORMAT, CHECKPOINT_FORMAT.to_string()),
            (STEP, self.step.to_string()),
            (RNG, self.rng.iter().map(|v| format!("{v:016x}")).collect::<Vec<_>>().join(",")),
            (DATA_EPOCH, self.data_epoch.to_string()),
            (DATA_POSITION, self.data_position.to_string()),
            (MODEL_HASH, self.model_hash.clone()),
            (SCHEDULE, c.schedule.to_string()),
            (TIMESTEPS, c.timesteps.to_string()),
            (PREDICTION, c.prediction.to_string()),
            (CONFIG, serde_json::to_string(c).expect("config serialises")),
            (TENSORS_SHA256, digests.parts.clone()),
            (MDC_VERSION, self.mdc_version.clone()),
        ]
        .into_iter()
        .chain(
            (!self.class_names.is_empty())
                .then(|| (CLASS_NAMES, serde_json::to_string(&self.class_names).expect("strings serialise"))),
        )
        .chain(self.guide_step.iter().map(|s| (GUIDE_STEP, s.to_string())))
        .chain(digests.guide.iter().map(|d| (GUIDE_SHA256, d.clone())))
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        meta.insert(METADATA_SHA256.to_string(), metadata_digest(&meta));
        meta
    }

    /// Reads the metadata of a checkpoint of format `version`. The error is the reason, for a
    /// message that names the file: a damaged or missing key, a value that does not parse, a
    /// recipe that does not parse or disagrees with the keys that repeat it.
    pub fn from_metadata(
        meta: &HashMap<String, String>,
        version: FormatVersion,
    ) -> Result<(CheckpointInfo, TensorDigests), String> {
        use keys::*;
        let damaged = "the header is damaged";
        if version >= FormatVersion::V2 {
            let recorded = meta.get(METADATA_SHA256).ok_or_else(|| {
                format!("metadata `{METADATA_SHA256}` is missing ({damaged}, or the file was edited)")
            })?;
            if *recorded != metadata_digest(meta) {
                return Err(format!(
                    "the metadata does not match its recorded SHA-256 (`{METADATA_SHA256}`): {damaged}, or the file was edited"
                ));
            }
        }
        let known = [
            FORMAT,
            STEP,
            RNG,
            DATA_EPOCH,
            DATA_POSITION,
            MODEL_HASH,
            SCHEDULE,
            TIMESTEPS,
            PREDICTION,
            CONFIG,
            TENSORS_SHA256,
            MDC_VERSION,
            CLASS_NAMES,
            GUIDE_STEP,
            GUIDE_SHA256,
            METADATA_SHA256,
        ];
        let mut unknown: Vec<&String> = meta.keys().filter(|k| !known.contains(&k.as_str())).collect();
        unknown.sort();
        if let Some(k) = unknown.first() {
            return Err(format!("metadata key `{k}` is not one a checkpoint has ({damaged}?)"));
        }
        let field = |k: &str| meta.get(k).ok_or_else(|| format!("metadata `{k}` is missing"));
        let number = |k: &str| -> Result<u64, String> {
            let v = field(k)?;
            v.parse().map_err(|_| format!("metadata `{k}` = {v:?} is not a number"))
        };
        let rng_text = field(RNG)?;
        let rng: [u64; 4] = rng_text
            .split(',')
            .map(|s| u64::from_str_radix(s, 16).ok())
            .collect::<Option<Vec<u64>>>()
            .and_then(|words| words.try_into().ok())
            .ok_or_else(|| format!("metadata `{RNG}` = {rng_text:?} is not four hex numbers"))?;
        let config = read_config(field(CONFIG)?, version)?;
        // The keys that repeat the recipe must agree with it.
        let schedule = field(SCHEDULE)?;
        if ScheduleKind::parse(schedule) != Some(config.schedule) {
            return Err(format!(
                "metadata `{SCHEDULE}` = {schedule:?} disagrees with the recipe (`{CONFIG}`: {}): {damaged}",
                config.schedule
            ));
        }
        if number(TIMESTEPS)? != config.timesteps as u64 {
            return Err(format!(
                "metadata `{TIMESTEPS}` = {:?} disagrees with the recipe (`{CONFIG}`: {}): {damaged}",
                meta[TIMESTEPS], config.timesteps
            ));
        }
        // Version 1 files from before `prediction` existed predict the noise.
        let prediction = match meta.get(PREDICTION) {
            None if version == FormatVersion::V1 => Prediction::Noise,
            None => return Err(format!("metadata `{PREDICTION}` is missing")),
            Some(p) => Prediction::parse(p).ok_or_else(|| {
                format!("metadata `{PREDICTION}` = {p:?} is not a prediction (expected noise or velocity)")
            })?,
        };
        if prediction != config.prediction {
            return Err(format!(
                "metadata `{PREDICTION}` {} disagrees with the recipe (`{CONFIG}`: {}): {damaged}",
                meta.get(PREDICTION).map_or("(absent: noise)".to_string(), |p| format!("= {p:?}")),
                config.prediction
            ));
        }
        let class_names: Vec<String> = match meta.get(CLASS_NAMES) {
            None => Vec::new(),
            Some(v) => serde_json::from_str(v)
                .map_err(|e| format!("metadata `{CLASS_NAMES}` is not a JSON list of names ({e})"))?,
        };
        let (guide_step, guide_digest) = match (meta.get(GUIDE_STEP), meta.get(GUIDE_SHA256)) {
            (None, None) => (None, None),
            (Some(_), Some(d)) => (Some(number(GUIDE_STEP)?), Some(d.clone())),
            (Some(_), None) => return Err(format!("metadata `{GUIDE_SHA256}` is missing")),
            (None, Some(_)) => return Err(format!("metadata `{GUIDE_STEP}` is missing")),
        };
        let info = CheckpointInfo {
            step: number(STEP)?,
            rng,
            data_epoch: number(DATA_EPOCH)?,
            data_position: number(DATA_POSITION)? as usize,
            model_hash: field(MODEL_HASH)?.clone(),
            config,
            class_names,
            guide_step,
            mdc_version: field(MDC_VERSION)?.clone(),
        };
        Ok((info, TensorDigests { parts: field(TENSORS_SHA256)?.clone(), guide: guide_digest }))
    }
}

/// The recipe under `config`: JSON naming every setting (version 1 files may lack the settings
/// added after them, which get their legacy values), each within its limits.
fn read_config(text: &str, version: FormatVersion) -> Result<TrainConfig, String> {
    let invalid = |e: String| format!("metadata `{}` is not a valid training recipe ({e})", keys::CONFIG);
    let json: serde_json::Value = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
    if version >= FormatVersion::V2 {
        let object = json.as_object().ok_or_else(|| invalid("not a JSON object".into()))?;
        let all = serde_json::to_value(TrainConfig::default()).expect("config serialises");
        let all = all.as_object().expect("a recipe serialises as an object");
        if let Some(k) = all.keys().find(|k| !object.contains_key(*k)) {
            return Err(invalid(format!("`{k}` is missing")));
        }
    }
    let config: TrainConfig = serde_json::from_value(json).map_err(|e| invalid(e.to_string()))?;
    config.check_ranges().map_err(|e| format!("metadata `{}`: {e}", keys::CONFIG))?;
    Ok(config)
}
