//! Opening a weights file mdc reads: a plain weights file (tensors named `<node>.<param>`) or a
//! training checkpoint ([`CheckpointInfo`]); its header is read and checked once, on opening,
//! and its tensors against their digests when they are taken.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::checkpoint_info::{
    keys, CheckpointInfo, FormatVersion, TensorDigests, CHECKPOINT_GUIDE, CHECKPOINT_PARTS,
};
use super::{tensors_digest, Params, WeightsError};
use crate::base::safetensors_out::safetensors_bytes;
use crate::graph::Graph;

/// A weights file, read and classified.
pub struct WeightsFile {
    path: PathBuf,
    origin: String,
    bytes: Vec<u8>,
    kind: Kind,
}

enum Kind {
    /// Plain weights; `model_hash` when its metadata names the model file's hash.
    Plain {
        model_hash: Option<String>,
    },
    Checkpoint {
        info: Box<CheckpointInfo>,
        version: FormatVersion,
        digests: TensorDigests,
    },
}

impl WeightsFile {
    /// Reads `path` and its metadata. A checkpoint whose metadata is damaged, or a file that holds
    /// a checkpoint's tensors but no checkpoint `format`, is [`WeightsError::Corrupt`].
    pub fn open(path: &Path) -> Result<WeightsFile, WeightsError> {
        let origin = path.display().to_string();
        let bytes =
            std::fs::read(path).map_err(|source| WeightsError::Io { path: origin.clone(), source })?;
        let corrupt = |reason: String| WeightsError::Corrupt { path: origin.clone(), reason };
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| corrupt(format!("not a valid safetensors file ({e})")))?;
        let meta: HashMap<String, String> = header.metadata().clone().unwrap_or_default();
        let format = meta.get(keys::FORMAT);
        let kind = match format.and_then(|f| FormatVersion::parse(f)) {
            Some(version) => {
                let (info, digests) = CheckpointInfo::from_metadata(&meta, version).map_err(corrupt)?;
                Kind::Checkpoint { info: Box::new(info), version, digests }
            }
            None => {
                let names = header.offset_keys();
                let checkpoint_like = !names.is_empty()
                    && CHECKPOINT_PARTS.iter().all(|p| names.iter().any(|n| n.starts_with(p)));
                let mdc_like = format.is_some_and(|f| f.starts_with("mdc-"));
                if checkpoint_like || mdc_like {
                    let found = format.map_or("missing".to_string(), |f| format!("{f:?}"));
                    return Err(corrupt(format!(
                        "it holds a training checkpoint's tensors or format, but its metadata `{}` is {found} \
                         (expected {:?} or {:?}): the header is damaged, or a newer mdc wrote it",
                        keys::FORMAT,
                        FormatVersion::V1.name(),
                        FormatVersion::V2.name()
                    )));
                }
                Kind::Plain { model_hash: meta.get(keys::MODEL_HASH).cloned() }
            }
        };
        Ok(WeightsFile { path: path.to_path_buf(), origin, bytes, kind })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file as messages name it.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// What a training checkpoint records (None: plain weights).
    pub fn checkpoint(&self) -> Option<&CheckpointInfo> {
        match &self.kind {
            Kind::Checkpoint { info, .. } => Some(info),
            Kind::Plain { .. } => None,
        }
    }

    /// A checkpoint's format version (None: plain weights).
    pub fn format_version(&self) -> Option<FormatVersion> {
        match &self.kind {
            Kind::Checkpoint { version, .. } => Some(*version),
            Kind::Plain { .. } => None,
        }
    }

    /// The sha256 of the model file the weights were trained from, when the file records it.
    pub fn model_hash(&self) -> Option<&str> {
        match &self.kind {
            Kind::Checkpoint { info, .. } => Some(&info.model_hash),
            Kind::Plain { model_hash } => model_hash.as_deref(),
        }
    }

    fn corrupt(&self, reason: String) -> WeightsError {
        WeightsError::Corrupt { path: self.origin.clone(), reason }
    }

    /// The four parts of a training checkpoint ([`CHECKPOINT_PARTS`]: weights, EMA, Adam moments),
    /// each checked against `graph`, and all of them against the recorded digest, so damaged
    /// bytes are an error, not silent garbage.
    pub fn parts(&self, graph: &Graph) -> Result<[Params; 4], WeightsError> {
        let Kind::Checkpoint { digests, .. } = &self.kind else {
            return Err(self.corrupt("it is not a training checkpoint".into()));
        };
        let mut parts = Vec::with_capacity(CHECKPOINT_PARTS.len());
        for prefix in CHECKPOINT_PARTS {
            parts.push(Params::from_safetensors(&self.bytes, graph, prefix, &self.origin)?);
        }
        if tensors_digest([&parts[0], &parts[1], &parts[2], &parts[3]]) != digests.parts {
            return Err(self.corrupt(format!(
                "the tensor data does not match its recorded SHA-256 (`{}`): damaged bytes",
                keys::TENSORS_SHA256
            )));
        }
        Ok(parts.try_into().unwrap_or_else(|_| unreachable!("one Params per checkpoint part")))
    }

    /// Weights for inference: a plain file's, or a checkpoint's EMA weights (its raw ones when
    /// `prefer_ema` is false), checked against the digest.
    pub fn weights(&self, graph: &Graph, prefer_ema: bool) -> Result<Params, WeightsError> {
        match &self.kind {
            Kind::Plain { .. } => Params::from_safetensors(&self.bytes, graph, "", &self.origin),
            Kind::Checkpoint { .. } => {
                // [`CHECKPOINT_PARTS`] order: the weights, then their EMA.
                let [model, ema, _, _] = self.parts(graph)?;
                Ok(if prefer_ema { ema } else { model })
            }
        }
    }

    /// The autoguidance guide a training checkpoint keeps (the step it was taken at and its
    /// weights, checked against their digest), or None where the file keeps none.
    pub fn guide(&self, graph: &Graph) -> Result<Option<(u64, Params)>, WeightsError> {
        let Kind::Checkpoint { info, digests, .. } = &self.kind else {
            return Ok(None);
        };
        let (Some(step), Some(digest)) = (info.guide_step, &digests.guide) else {
            return Ok(None);
        };
        let guide = Params::from_safetensors(&self.bytes, graph, CHECKPOINT_GUIDE, &self.origin)?;
        if guide.digest() != *digest {
            return Err(self.corrupt(format!(
                "the guide's tensor data does not match its recorded SHA-256 (`{}`): damaged bytes",
                keys::GUIDE_SHA256
            )));
        }
        Ok(Some((step, guide)))
    }
}

/// The bytes of a training checkpoint: the four [`CHECKPOINT_PARTS`], the guide's weights when
/// `info` keeps one, and `info` as metadata in the current format, with the tensors' digests; the
/// same bytes for the same checkpoint ([`safetensors_bytes`]).
pub fn checkpoint_bytes(info: &CheckpointInfo, parts: [&Params; 4], guide: Option<&Params>) -> Vec<u8> {
    let mut views = Vec::new();
    for (prefix, p) in CHECKPOINT_PARTS.iter().zip(parts) {
        views.extend(p.named_views(prefix));
    }
    if let Some(g) = guide {
        views.extend(g.named_views(CHECKPOINT_GUIDE));
    }
    let digests = TensorDigests { parts: tensors_digest(parts), guide: guide.map(Params::digest) };
    safetensors_bytes(views, Some(&info.to_metadata(&digests)))
}
