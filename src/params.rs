//! A model's parameters: created from a seed, saved and loaded as safetensors named
//! `<node>.<param>` in PyTorch layout, so a PyTorch user can `load_state_dict` them.

use std::collections::BTreeMap;
use std::path::Path;

use ndarray::{ArrayD, IxDyn};

use crate::base::rng::Rng;
use crate::graph::{Graph, Init, ParamSpec};

/// The `format` metadata value of a training checkpoint (see [`Params::load_for_inference`]).
pub const CHECKPOINT_FORMAT: &str = "mdc-checkpoint-v1";

/// Tensor name prefixes of a training checkpoint's parameter sets: the weights, their EMA and
/// the AdamW moments, in the order [`tensors_digest`] hashes them.
pub const CHECKPOINT_MODEL: &str = "model.";
pub const CHECKPOINT_EMA: &str = "ema.";
pub const CHECKPOINT_PARTS: [&str; 4] = [CHECKPOINT_MODEL, CHECKPOINT_EMA, "adam_m.", "adam_v."];

/// The checkpoint metadata key holding [`tensors_digest`] of its tensors.
pub const CHECKPOINT_DIGEST: &str = "tensors_sha256";

/// The optional fifth parameter set of a checkpoint: the autoguidance guide, the EMA weights as
/// they were at step `guide_step` (metadata), with their own digest under `guide_sha256`.
pub const CHECKPOINT_GUIDE: &str = "guide.";
pub const GUIDE_STEP: &str = "guide_step";
pub const GUIDE_DIGEST: &str = "guide_sha256";

/// The class names a checkpoint records (JSON list under `class_names`), when it records them.
pub fn class_names_from_meta(meta: &std::collections::HashMap<String, String>) -> Option<Vec<String>> {
    serde_json::from_str(meta.get("class_names")?).ok()
}

/// SHA-256 (hex) over every tensor's little-endian bytes, the parts in [`CHECKPOINT_PARTS`]
/// order and each in the graph's parameter order: what a checkpoint records so damaged bytes
/// are caught.
pub fn tensors_digest(parts: [&Params; 4]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in parts {
        p.hash_into(&mut h);
    }
    format!("{:x}", h.finalize())
}

/// Parameter tensors in the graph's fixed order ([`Graph::params`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    pub names: Vec<String>,
    pub tensors: Vec<ArrayD<f32>>,
}

/// What went wrong reading a weights file, with enough detail to act on.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("cannot read weights file {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path} is corrupt: {reason}")]
    Corrupt { path: String, reason: String },
    #[error("{path} does not fit this model:\n{}", .problems.join("\n"))]
    Mismatch { path: String, problems: Vec<String> },
}

impl Params {
    /// PyTorch's default initialisation, deterministic for a seed.
    pub fn init(graph: &Graph, seed: u64) -> Params {
        let mut rng = Rng::new(seed);
        let (names, tensors) = graph
            .params()
            .into_iter()
            .map(|(name, spec)| {
                let t = init_tensor(&spec, &mut rng);
                (name, t)
            })
            .unzip();
        Params { names, tensors }
    }

    /// Zeros shaped like `self` (gradients, optimizer moments).
    pub fn zeros_like(&self) -> Params {
        Params {
            names: self.names.clone(),
            tensors: self.tensors.iter().map(|t| ArrayD::zeros(t.raw_dim())).collect(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&ArrayD<f32>> {
        self.names.iter().position(|n| n == name).map(|i| &self.tensors[i])
    }

    pub fn numel(&self) -> usize {
        self.tensors.iter().map(|t| t.len()).sum()
    }

    /// Serialises to safetensors bytes, tensors named as in `names`, plus string metadata.
    pub fn to_safetensors(&self, metadata: Option<std::collections::HashMap<String, String>>) -> Vec<u8> {
        let views = self.named_views("");
        safetensors::serialize(views, metadata).expect("f32 tensors with consistent shapes serialise")
    }

    /// (name, view) pairs with `prefix` prepended to each name, for building a larger file
    /// (a training checkpoint stores weights, EMA and optimizer moments side by side).
    pub fn named_views(&self, prefix: &str) -> Vec<(String, safetensors::tensor::TensorView<'_>)> {
        self.names
            .iter()
            .zip(&self.tensors)
            .map(|(n, t)| {
                let bytes: &[u8] = bytemuck::cast_slice(t.as_slice().expect("parameters are contiguous"));
                let view =
                    safetensors::tensor::TensorView::new(safetensors::Dtype::F32, t.shape().to_vec(), bytes)
                        .expect("shape matches data");
                (format!("{prefix}{n}"), view)
            })
            .collect()
    }

    /// Writes the parameters to `path` atomically (temp file + rename).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        crate::base::fsutil::write_atomic(path, &self.to_safetensors(None))
    }

    /// Loads `path` and checks every name, shape and dtype against `graph`.
    pub fn load(path: &Path, graph: &Graph) -> Result<Params, WeightsError> {
        let bytes = std::fs::read(path)
            .map_err(|source| WeightsError::Io { path: path.display().to_string(), source })?;
        Self::from_safetensors(&bytes, graph, "", &path.display().to_string())
    }

    /// Reads the tensors named `<prefix><param>` for every parameter of `graph` from safetensors
    /// bytes; tensors with other prefixes are ignored. `origin` names the file in messages.
    pub fn from_safetensors(
        bytes: &[u8],
        graph: &Graph,
        prefix: &str,
        origin: &str,
    ) -> Result<Params, WeightsError> {
        let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| WeightsError::Corrupt {
            path: origin.to_string(),
            reason: format!("not a valid safetensors file ({e})"),
        })?;
        let expected = graph.params();
        let mut problems = Vec::new();
        let mut tensors = Vec::with_capacity(expected.len());
        for (name, spec) in &expected {
            let key = format!("{prefix}{name}");
            match st.tensor(&key) {
                Err(_) => problems.push(format!("  missing tensor `{key}` (expected f32 {:?})", spec.shape)),
                Ok(view) => {
                    if view.dtype() != safetensors::Dtype::F32 {
                        problems.push(format!("  `{key}`: expected dtype F32, found {:?}", view.dtype()));
                    } else if view.shape() != spec.shape.as_slice() {
                        problems.push(format!(
                            "  `{key}`: expected shape {:?}, found {:?}",
                            spec.shape,
                            view.shape()
                        ));
                    } else {
                        let data = f32_from_bytes(view.data());
                        tensors
                            .push(ArrayD::from_shape_vec(IxDyn(&spec.shape), data).expect("shape checked"));
                    }
                }
            }
        }
        let known: std::collections::HashSet<String> =
            expected.iter().map(|(n, _)| format!("{prefix}{n}")).collect();
        let mut extra: Vec<String> = st
            .names()
            .into_iter()
            .filter(|n| n.starts_with(prefix) && !known.contains(*n))
            .map(|s| s.to_string())
            .collect();
        extra.sort();
        for n in extra.iter().take(10) {
            problems.push(format!("  unexpected tensor `{n}` (not a parameter of this model)"));
        }
        if extra.len() > 10 {
            problems.push(format!("  ... and {} more unexpected tensors", extra.len() - 10));
        }
        if !problems.is_empty() {
            if problems.len() > 1 {
                problems.push(
                    "  hint: the weights come from a different model file (another channel progression or block names?)"
                        .into(),
                );
            }
            return Err(WeightsError::Mismatch { path: origin.to_string(), problems });
        }
        Ok(Params { names: expected.into_iter().map(|(n, _)| n).collect(), tensors })
    }

    /// Weights for inference from either kind of file mdc writes: a plain weights file (tensors named
    /// `<node>.<param>`) or a training checkpoint (metadata `format` = [`CHECKPOINT_FORMAT`], tensors
    /// prefixed as [`CHECKPOINT_PARTS`]). From a checkpoint the EMA weights are taken
    /// unless `prefer_ema` is false, after checking every tensor against the checkpoint's
    /// recorded digest ([`CHECKPOINT_DIGEST`]). Returns the file's string metadata too.
    pub fn load_for_inference(
        path: &Path,
        graph: &Graph,
        prefer_ema: bool,
    ) -> Result<(Params, std::collections::HashMap<String, String>), WeightsError> {
        let origin = path.display().to_string();
        let bytes =
            std::fs::read(path).map_err(|source| WeightsError::Io { path: origin.clone(), source })?;
        let corrupt = |reason: String| WeightsError::Corrupt { path: origin.clone(), reason };
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| corrupt(format!("not a valid safetensors file ({e})")))?;
        let metadata = header.metadata().clone().unwrap_or_default();
        if metadata.get("format").map(String::as_str) != Some(CHECKPOINT_FORMAT) {
            let params = Self::from_safetensors(&bytes, graph, "", &origin)?;
            return Ok((params, metadata));
        }
        let [model, ema, _, _] = Self::checkpoint_parts(&bytes, &metadata, graph, &origin)?;
        Ok((if prefer_ema { ema } else { model }, metadata))
    }

    /// The autoguidance guide a training checkpoint holds (the step it was taken at and its
    /// weights, checked against its digest), or None where the run kept none.
    pub fn checkpoint_guide(
        bytes: &[u8],
        metadata: &std::collections::HashMap<String, String>,
        graph: &Graph,
        origin: &str,
    ) -> Result<Option<(u64, Params)>, WeightsError> {
        let corrupt = |reason: String| WeightsError::Corrupt { path: origin.to_string(), reason };
        let Some(step) = metadata.get(GUIDE_STEP) else {
            return Ok(None);
        };
        let step: u64 = step
            .parse()
            .map_err(|_| corrupt(format!("metadata `{GUIDE_STEP}` = {step:?} is not a number")))?;
        let digest = metadata
            .get(GUIDE_DIGEST)
            .ok_or_else(|| corrupt(format!("checkpoint metadata `{GUIDE_DIGEST}` is missing")))?;
        let guide = Self::from_safetensors(bytes, graph, CHECKPOINT_GUIDE, origin)?;
        if guide.digest() != *digest {
            return Err(corrupt(format!(
                "the guide's tensor data does not match its recorded SHA-256 (`{GUIDE_DIGEST}`): damaged bytes"
            )));
        }
        Ok(Some((step, guide)))
    }

    /// Reads the autoguidance guide from a file mdc wrote: None for a plain weights file or a
    /// checkpoint without one.
    pub fn load_guide(path: &Path, graph: &Graph) -> Result<Option<(u64, Params)>, WeightsError> {
        let origin = path.display().to_string();
        let bytes =
            std::fs::read(path).map_err(|source| WeightsError::Io { path: origin.clone(), source })?;
        let (_, header) =
            safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| WeightsError::Corrupt {
                path: origin.clone(),
                reason: format!("not a valid safetensors file ({e})"),
            })?;
        let metadata = header.metadata().clone().unwrap_or_default();
        Self::checkpoint_guide(&bytes, &metadata, graph, &origin)
    }

    /// SHA-256 (hex) of this parameter set's tensors, as [`tensors_digest`] hashes each part.
    pub fn digest(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        self.hash_into(&mut h);
        format!("{:x}", h.finalize())
    }

    /// Feeds every tensor's little-endian bytes, in parameter order, to `h`.
    fn hash_into(&self, h: &mut sha2::Sha256) {
        use sha2::Digest;
        for t in &self.tensors {
            // native bytes are little-endian: the crate refuses to build for big-endian targets
            let t = t.as_standard_layout();
            h.update(bytemuck::cast_slice::<f32, u8>(t.as_slice().expect("standard layout")));
        }
    }

    /// The four parts of a training checkpoint ([`CHECKPOINT_PARTS`]: weights, EMA, Adam moments)
    /// from its bytes, each checked against `graph`, and all of them against the digest the
    /// checkpoint records ([`CHECKPOINT_DIGEST`]), so damaged bytes are an error, not silent garbage.
    pub fn checkpoint_parts(
        bytes: &[u8],
        metadata: &std::collections::HashMap<String, String>,
        graph: &Graph,
        origin: &str,
    ) -> Result<[Params; 4], WeightsError> {
        let corrupt = |reason: String| WeightsError::Corrupt { path: origin.to_string(), reason };
        let digest = metadata
            .get(CHECKPOINT_DIGEST)
            .ok_or_else(|| corrupt(format!("checkpoint metadata `{CHECKPOINT_DIGEST}` is missing")))?;
        let mut parts = Vec::with_capacity(CHECKPOINT_PARTS.len());
        for prefix in CHECKPOINT_PARTS {
            parts.push(Self::from_safetensors(bytes, graph, prefix, origin)?);
        }
        if tensors_digest([&parts[0], &parts[1], &parts[2], &parts[3]]) != *digest {
            return Err(corrupt(format!(
                "the tensor data does not match its recorded SHA-256 (`{CHECKPOINT_DIGEST}`): damaged bytes"
            )));
        }
        Ok(parts.try_into().unwrap_or_else(|_| unreachable!("one Params per checkpoint part")))
    }

    /// Name -> tensor, for lookups by name.
    pub fn by_name(&self) -> BTreeMap<&str, &ArrayD<f32>> {
        self.names.iter().map(String::as_str).zip(&self.tensors).collect()
    }
}

fn init_tensor(spec: &ParamSpec, rng: &mut Rng) -> ArrayD<f32> {
    let n = spec.numel();
    let data: Vec<f32> = match spec.init {
        // kaiming_uniform(a=sqrt(5)): gain = sqrt(2 / (1 + 5)), bound = gain * sqrt(3 / fan_in) = 1/sqrt(fan_in)
        Init::KaimingUniform { fan_in } | Init::BiasUniform { fan_in } => {
            let bound = 1.0 / (fan_in as f64).sqrt();
            (0..n).map(|_| rng.uniform_range(-bound, bound) as f32).collect()
        }
        Init::Constant(v) => vec![v; n],
        Init::Normal { std } => (0..n).map(|_| (rng.normal() * std as f64) as f32).collect(),
    };
    ArrayD::from_shape_vec(IxDyn(&spec.shape), data).expect("numel matches shape")
}

fn f32_from_bytes(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}
