//! A model's parameters: created from a seed, saved and loaded as safetensors named
//! `<node>.<param>` in PyTorch layout, so a PyTorch user can `load_state_dict` them.

use std::collections::BTreeMap;
use std::path::Path;

use ndarray::{ArrayD, IxDyn};

use crate::base::rng::Rng;
use crate::base::safetensors_out::safetensors_bytes;
use crate::graph::{Graph, Init, ParamSpec};

mod checkpoint_info;
mod weights_file;

pub use checkpoint_info::{
    keys as checkpoint_keys, metadata_digest, tensors_digest, CheckpointInfo, FormatVersion, TensorDigests,
    CHECKPOINT_EMA, CHECKPOINT_FORMAT, CHECKPOINT_GUIDE, CHECKPOINT_MODEL, CHECKPOINT_PARTS,
};
pub use weights_file::{checkpoint_bytes, WeightsFile};

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

    /// Serialises to safetensors bytes, tensors named as in `names`, plus string metadata; the
    /// same bytes for the same content ([`safetensors_bytes`]).
    pub fn to_safetensors(&self, metadata: Option<&std::collections::HashMap<String, String>>) -> Vec<u8> {
        safetensors_bytes(self.named_views(""), metadata)
    }

    /// (name, view) pairs with `prefix` prepended to each name, for building a larger file
    /// (a training checkpoint stores weights, EMA and optimizer moments side by side).
    pub fn named_views(&self, prefix: &str) -> Vec<(String, safetensors::tensor::TensorView<'_>)> {
        self.names
            .iter()
            .zip(&self.tensors)
            .map(|(n, t)| {
                let bytes = f32_bytes(t.as_slice().expect("parameters are contiguous"));
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

    /// SHA-256 (hex) of this parameter set's tensors, as [`tensors_digest`] hashes each part
    /// (a checkpoint's `guide_sha256`).
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
            h.update(f32_bytes(t.as_slice().expect("parameters are contiguous")));
        }
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

fn f32_bytes(data: &[f32]) -> &[u8] {
    // f32 has no padding and any byte pattern is a valid u8; safetensors is little-endian and so is
    // every target mdc supports.
    unsafe { std::slice::from_raw_parts(data.as_ptr() as *const u8, std::mem::size_of_val(data)) }
}

fn f32_from_bytes(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}
