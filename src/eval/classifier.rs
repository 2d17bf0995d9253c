//! An image classifier in an onnxruntime session: an ONNX file with one image input and two
//! outputs, `logits` [N, K] and `features` [N, D] (a late layer, for the Fréchet distance).
//!
//! The file says how it wants its images in its metadata: `input_range` ("-1,1" or "0,1"; mdc's
//! images are in [-1, 1]), `input_shape` ("C,H,W"; else the input's static dimensions) and
//! optionally `classes` (comma-separated names, else 0..K-1).

use std::collections::HashMap;

use anyhow::{bail, Context};
use ndarray::{s, Array2, Array4, ArrayView4, Ix2};
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::TensorRef;

use crate::runtime::discover;

pub const OUTPUT_LOGITS: &str = "logits";
pub const OUTPUT_FEATURES: &str = "features";

/// Images per onnxruntime call (bounded memory for any sample count).
const BATCH: usize = 500;

/// The range the classifier expects pixel values in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum InputRange {
    /// -1 black, 1 white: mdc's own convention.
    MinusOneToOne,
    /// 0 black, 1 white.
    ZeroToOne,
}

/// What a classifier gives for a batch of images.
#[derive(Debug, Clone)]
pub struct Outputs {
    /// Softmax probabilities [N, K].
    pub probabilities: Array2<f32>,
    /// Features [N, D].
    pub features: Array2<f32>,
}

pub struct Classifier {
    session: Session,
    input: String,
    range: InputRange,
    /// [C, H, W] of one image.
    pub image: [usize; 3],
    pub classes: Vec<String>,
    /// Where it came from, for messages ("mnist (built in)" or a path).
    pub name: String,
    /// Metadata as the file gives it (test accuracy, dataset, ...).
    pub metadata: HashMap<String, String>,
}

impl Classifier {
    /// Opens an ONNX classifier held in memory; `name` names it in messages.
    pub fn from_bytes(bytes: &[u8], name: &str) -> anyhow::Result<Classifier> {
        let env = discover::environment()?;
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let session = Session::builder(env)
            .and_then(|b| Ok(b.with_optimization_level(GraphOptimizationLevel::All)?))
            .and_then(|b| Ok(b.with_intra_threads(threads)?))
            .context("cannot configure an onnxruntime session")?
            .commit_from_memory(bytes)
            .map_err(|e| anyhow::anyhow!("onnxruntime cannot load the classifier {name}: {e}"))?;
        Classifier::from_session(session, name)
    }

    /// Opens an ONNX classifier file.
    pub fn open(path: &std::path::Path) -> anyhow::Result<Classifier> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read the classifier {}", path.display()))?;
        Classifier::from_bytes(&bytes, &path.display().to_string())
    }

    fn from_session(session: Session, name: &str) -> anyhow::Result<Classifier> {
        let metadata = read_metadata(&session, name)?;
        let inputs: Vec<&str> = session.inputs().iter().map(|o| o.name()).collect();
        let outputs: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
        if inputs.len() != 1 || !outputs.contains(&OUTPUT_LOGITS) || !outputs.contains(&OUTPUT_FEATURES) {
            bail!(
                "{name}: expected a classifier with one image input and outputs `{OUTPUT_LOGITS}` and \
                 `{OUTPUT_FEATURES}`, found inputs {inputs:?}, outputs {outputs:?}"
            );
        }
        let input = inputs[0].to_string();
        let range = match metadata.get("input_range").map(|s| s.replace(' ', "")) {
            Some(r) if r == "-1,1" => InputRange::MinusOneToOne,
            Some(r) if r == "0,1" => InputRange::ZeroToOne,
            Some(r) => bail!("{name}: metadata input_range is {r:?}; expected \"-1,1\" or \"0,1\""),
            None => bail!(
                "{name}: no `input_range` in the ONNX metadata; add \"-1,1\" or \"0,1\" (the pixel range \
                 the classifier was trained on) to its metadata_props"
            ),
        };
        let image = match metadata.get("input_shape") {
            Some(s) => parse_shape(s).with_context(|| format!("{name}: metadata input_shape {s:?}"))?,
            None => static_input_shape(&session).with_context(|| {
                format!("{name}: the input has no static C, H, W and the metadata has no input_shape")
            })?,
        };
        let classes = match metadata.get("classes") {
            Some(c) => c.split(',').map(str::to_string).collect(),
            None => Vec::new(),
        };
        Ok(Classifier { session, input, range, image, classes, name: name.to_string(), metadata })
    }

    /// Probabilities and features of `images` [N, C, H, W] in [-1, 1].
    pub fn run(&mut self, images: ArrayView4<f32>) -> anyhow::Result<Outputs> {
        let (n, c, h, w) = images.dim();
        if [c, h, w] != self.image {
            let [ec, eh, ew] = self.image;
            bail!("the classifier {} takes {ec}x{eh}x{ew} images (CxHxW), found {c}x{h}x{w}", self.name);
        }
        let mut probabilities = Vec::with_capacity(n);
        let mut features = Vec::with_capacity(n);
        for start in (0..n).step_by(BATCH) {
            let chunk = images.slice(s![start..(start + BATCH).min(n), .., .., ..]);
            let x: Array4<f32> = match self.range {
                InputRange::MinusOneToOne => chunk.to_owned(),
                InputRange::ZeroToOne => chunk.mapv(|v| (v + 1.0) / 2.0),
            };
            let out = self
                .session
                .run(ort::inputs![self.input.as_str() => TensorRef::from_array_view(&x)?])
                .with_context(|| format!("onnxruntime failed running the classifier {}", self.name))?;
            let logits = two_d(&out, OUTPUT_LOGITS, &self.name)?;
            let feats = two_d(&out, OUTPUT_FEATURES, &self.name)?;
            probabilities.push(softmax_rows(logits));
            features.push(feats);
        }
        let cat = |parts: Vec<Array2<f32>>| {
            let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
            ndarray::concatenate(ndarray::Axis(0), &views).expect("equal widths")
        };
        let probabilities = cat(probabilities);
        if !self.classes.is_empty() && self.classes.len() != probabilities.ncols() {
            bail!(
                "{}: metadata names {} classes but `{OUTPUT_LOGITS}` has {}",
                self.name,
                self.classes.len(),
                probabilities.ncols()
            );
        }
        Ok(Outputs { probabilities, features: cat(features) })
    }

    /// The name of class `k` (its index when the file names none).
    pub fn class_name(&self, k: usize) -> String {
        self.classes.get(k).cloned().unwrap_or_else(|| k.to_string())
    }
}

fn two_d(out: &ort::session::SessionOutputs, name: &str, model: &str) -> anyhow::Result<Array2<f32>> {
    let a = out[name].try_extract_array::<f32>().with_context(|| format!("{model}: output `{name}`"))?;
    let a =
        a.into_dimensionality::<Ix2>().with_context(|| format!("{model}: output `{name}` is not [N, K]"))?;
    Ok(a.to_owned())
}

/// Row-wise softmax, shifted by each row's maximum so large logits cannot overflow.
fn softmax_rows(mut logits: Array2<f32>) -> Array2<f32> {
    for mut row in logits.rows_mut() {
        let max = row.fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        row.mapv_inplace(|v| (v - max).exp());
        let sum = row.sum();
        row /= sum;
    }
    logits
}

fn read_metadata(session: &Session, name: &str) -> anyhow::Result<HashMap<String, String>> {
    let meta = session.metadata().with_context(|| format!("{name}: cannot read metadata"))?;
    let mut props = HashMap::new();
    for key in meta.custom_keys().with_context(|| format!("{name}: cannot read metadata"))? {
        if let Some(v) = meta.custom(&key) {
            props.insert(key, v);
        }
    }
    Ok(props)
}

fn parse_shape(s: &str) -> anyhow::Result<[usize; 3]> {
    let dims: Vec<usize> = s.split(',').map(|d| d.trim().parse()).collect::<Result<_, _>>()?;
    match dims[..] {
        [c, h, w] if c > 0 && h > 0 && w > 0 => Ok([c, h, w]),
        _ => bail!("expected three positive sizes C,H,W"),
    }
}

fn static_input_shape(session: &Session) -> anyhow::Result<[usize; 3]> {
    let shape = session.inputs()[0].dtype().tensor_shape().context("the input is not a tensor")?;
    match shape[..] {
        [_, c, h, w] if c > 0 && h > 0 && w > 0 => Ok([c as usize, h as usize, w as usize]),
        _ => bail!("input shape {shape:?}"),
    }
}

#[cfg(test)]
mod tests {
    use ndarray::array;

    use super::*;

    #[test]
    fn softmax_is_stable_and_normalised() {
        let p = softmax_rows(array![[1000.0f32, 1000.0], [0.0, f32::ln(3.0)]]);
        assert_eq!(p.row(0).to_vec(), vec![0.5, 0.5]);
        assert!((p[[1, 1]] - 0.75).abs() < 1e-6);
    }

    #[test]
    fn shapes_parse() {
        assert_eq!(parse_shape("1, 28,28").unwrap(), [1, 28, 28]);
        assert!(
            parse_shape("28,28").is_err() && parse_shape("0,28,28").is_err() && parse_shape("a").is_err()
        );
    }
}
