//! Training images: where they come from (the built-in set, an IDX file, a folder of PNG/JPEG),
//! scaled to [-1, 1] as [N, C, H, W], and the seeded order in which training visits them.

mod folder;
mod idx;
mod order;

pub use order::DataOrder;

use std::path::{Path, PathBuf};

use ndarray::{s, Array4, Axis};

/// 5000 MNIST digits (28x28 grey), compiled in so the default run needs no files: the first 1000
/// of the test set (the built-in set of earlier versions, so `builtin_digits = 1000` trains on
/// exactly what it did), then the first 4000 of the training set.
/// CC BY-SA 3.0, Yann LeCun and Corinna Cortes (see NOTICE).
const BUILTIN_MNIST: &[u8] = include_bytes!("builtin/mnist-digits-5000-idx3-ubyte.gz");
/// How many digits [`BUILTIN_MNIST`] holds.
pub const BUILTIN_DIGITS: usize = 5000;

/// A data problem, naming the file and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cannot read {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: {problem}")]
    Invalid { path: String, problem: String },
    #[error("{0}")]
    Mismatch(String),
}

impl DataError {
    fn invalid(path: &str, problem: impl Into<String>) -> DataError {
        DataError::Invalid { path: path.to_string(), problem: problem.into() }
    }
}

/// Where training images come from, as given to `--data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataSource {
    Builtin,
    /// An IDX image file (gzipped or raw) or a folder of PNG/JPEG images.
    Path(PathBuf),
}

impl DataSource {
    pub fn parse(s: &str) -> DataSource {
        if s == "builtin" {
            DataSource::Builtin
        } else {
            DataSource::Path(PathBuf::from(s))
        }
    }
}

impl std::fmt::Display for DataSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DataSource::Builtin => f.write_str("builtin"),
            DataSource::Path(p) => write!(f, "{}", p.display()),
        }
    }
}

/// Images [N, C, H, W] scaled to [-1, 1], and a description of where they came from.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub images: Array4<f32>,
    pub origin: String,
}

impl Dataset {
    /// Loads `source`. Image folders are resized to `size` = (height, width); IDX data keeps its
    /// own size (checked later by [`Dataset::check_fits`]).
    pub fn load(source: &DataSource, size: (usize, usize)) -> Result<Dataset, DataError> {
        match source {
            DataSource::Builtin => {
                let origin = "built-in MNIST digits";
                let images = idx::parse(BUILTIN_MNIST, origin)?;
                Ok(Dataset { images, origin: origin.to_string() })
            }
            DataSource::Path(p) if p.is_dir() => {
                let images = folder::load(p, size)?;
                Ok(Dataset { images, origin: p.display().to_string() })
            }
            DataSource::Path(p) => Dataset::load_idx(p),
        }
    }

    /// IDX image bytes, gzipped or raw, held in memory; `origin` names them in messages.
    pub fn from_idx_bytes(bytes: &[u8], origin: &str) -> Result<Dataset, DataError> {
        Ok(Dataset { images: idx::parse(bytes, origin)?, origin: origin.to_string() })
    }

    /// An IDX image file, gzipped or raw (told apart by content, not by name).
    pub fn load_idx(path: &Path) -> Result<Dataset, DataError> {
        let origin = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| DataError::Io { path: origin.clone(), source })?;
        let images = idx::parse(&bytes, &origin)?;
        Ok(Dataset { images, origin })
    }

    pub fn len(&self) -> usize {
        self.images.len_of(Axis(0))
    }

    /// The first `n` images (all of them when there are fewer).
    pub fn first(mut self, n: usize) -> Dataset {
        let n = n.min(self.len());
        self.images = self.images.slice(s![..n, .., .., ..]).to_owned();
        self
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// [C, H, W] of one image.
    pub fn image_shape(&self) -> [usize; 3] {
        let d = self.images.shape();
        [d[1], d[2], d[3]]
    }

    /// Fails with a message naming both sides when the images do not fit the model's input.
    pub fn check_fits(&self, model_input: [usize; 3], model_name: &str) -> Result<(), DataError> {
        let [c, h, w] = self.image_shape();
        let [mc, mh, mw] = model_input;
        if [c, h, w] == model_input {
            return Ok(());
        }
        let what = |c: usize| if c == 1 { "grey" } else { "RGB" };
        let mut hint = Vec::new();
        if c != mc {
            hint.push(format!(
                "the data is {} ({c} channel{}) but the model takes {mc}-channel input; use {} images (--data DIR) or a model with {c} input channel{}",
                what(c),
                if c == 1 { "" } else { "s" },
                what(mc),
                if c == 1 { "" } else { "s" },
            ));
        }
        if (h, w) != (mh, mw) {
            hint.push(format!(
                "the images are {h}x{w} but the model takes {mh}x{mw}; a folder of images (--data DIR) is resized automatically, IDX files are not"
            ));
        }
        Err(DataError::Mismatch(format!(
            "the data does not fit the model: {} has images {c}x{h}x{w} (CxHxW), {model_name} expects {mc}x{mh}x{mw}\n  {}",
            self.origin,
            hint.join("\n  ")
        )))
    }

    /// The images at `indices`, stacked in that order.
    pub fn gather(&self, indices: &[usize]) -> Array4<f32> {
        let [c, h, w] = self.image_shape();
        let mut out = Array4::zeros([indices.len(), c, h, w]);
        for (k, &i) in indices.iter().enumerate() {
            out.slice_mut(s![k, .., .., ..]).assign(&self.images.slice(s![i, .., .., ..]));
        }
        out
    }
}

/// u8 pixel to [-1, 1].
fn scale_pixel(v: u8) -> f32 {
    v as f32 / 127.5 - 1.0
}
