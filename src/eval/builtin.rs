//! The classifiers compiled into mdc (`--classifier mnist|fashion`), each with what scoring
//! needs beside it: the feature statistics of its 60,000 training images (the Fréchet distance's
//! reference) and real held-out test images (for calibration). All made by
//! `scripts/train_classifier.py`; see docs/eval.md.

use anyhow::Context;
use ndarray::{Array1, Array2};
use safetensors::{Dtype, SafeTensors};

use super::frechet::FeatureStats;

/// One shipped classifier and its data.
pub struct BuiltinClassifier {
    pub name: &'static str,
    /// What the images are, for messages ("MNIST digits").
    pub what: &'static str,
    pub onnx: &'static [u8],
    /// safetensors: `mean` [D] and `cov` [D, D], f64, metadata `count`.
    pub train_features: &'static [u8],
    /// Gzipped IDX: test images never trained on (test images 1000-3999: not among mdc's built-in
    /// training digits, which are test images 0-999 and training images 0-3999).
    pub heldout: &'static [u8],
}

/// A shipped classifier's files, found by name in assets/classifiers/.
macro_rules! shipped {
    ($name:literal, $what:literal) => {
        BuiltinClassifier {
            name: $name,
            what: $what,
            onnx: include_bytes!(concat!("../../assets/classifiers/", $name, ".onnx")),
            train_features: include_bytes!(concat!(
                "../../assets/classifiers/",
                $name,
                "-train-features.safetensors"
            )),
            heldout: include_bytes!(concat!(
                "../../assets/classifiers/",
                $name,
                "-heldout-images-idx3-ubyte.gz"
            )),
        }
    };
}

pub const MNIST: BuiltinClassifier = shipped!("mnist", "MNIST test digits");
pub const FASHION: BuiltinClassifier = shipped!("fashion", "Fashion-MNIST test images");

pub const ALL: [&BuiltinClassifier; 2] = [&MNIST, &FASHION];

pub fn find(name: &str) -> Option<&'static BuiltinClassifier> {
    ALL.into_iter().find(|b| b.name == name)
}

impl BuiltinClassifier {
    /// The training images' feature statistics.
    pub fn reference_stats(&self) -> anyhow::Result<FeatureStats> {
        read_stats(self.train_features, &format!("the {} reference statistics", self.name))
    }
}

/// Reads `mean` and `cov` (f64) and metadata `count` from safetensors bytes.
pub fn read_stats(bytes: &[u8], origin: &str) -> anyhow::Result<FeatureStats> {
    let st = SafeTensors::deserialize(bytes).with_context(|| format!("{origin}: not a safetensors file"))?;
    let f64s = |name: &str| -> anyhow::Result<(Vec<f64>, Vec<usize>)> {
        let t = st.tensor(name).with_context(|| format!("{origin}: no tensor `{name}`"))?;
        anyhow::ensure!(t.dtype() == Dtype::F64, "{origin}: `{name}` is {:?}, expected F64", t.dtype());
        let v =
            t.data().chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes"))).collect();
        Ok((v, t.shape().to_vec()))
    };
    let (mean, mshape) = f64s("mean")?;
    let (cov, cshape) = f64s("cov")?;
    let d = mean.len();
    anyhow::ensure!(
        mshape == [d] && cshape == [d, d],
        "{origin}: expected mean [D] and cov [D, D], found {mshape:?} and {cshape:?}"
    );
    let (_, header) = SafeTensors::read_metadata(bytes).with_context(|| format!("{origin}: header"))?;
    let count = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get("count"))
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("{origin}: no numeric `count` in the metadata"))?;
    Ok(FeatureStats {
        mean: Array1::from(mean),
        cov: Array2::from_shape_vec([d, d], cov).expect("shape checked"),
        count,
    })
}
