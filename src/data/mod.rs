//! Training images: where they come from (the built-in set, an IDX file, a folder of PNG/JPEG),
//! scaled to [-1, 1] as [N, C, H, W], their class labels when they have them, and the seeded order
//! in which training visits them.

mod folder;
mod idx;
mod labels;
mod order;

pub use labels::Labels;
pub use order::DataOrder;

use std::path::{Path, PathBuf};

use ndarray::{s, Array4, Axis};

/// 5000 MNIST digits (28x28 grey), compiled in so the default run needs no files: the first 1000
/// of the test set (the built-in set of earlier versions, so `builtin_digits = 1000` trains on
/// exactly what it did), then the first 4000 of the training set.
/// CC BY-SA 3.0, Yann LeCun and Corinna Cortes (see NOTICE).
const BUILTIN_MNIST: &[u8] = include_bytes!("builtin/mnist-digits-5000-idx3-ubyte.gz");
/// The MNIST labels (digits 0-9) of [`BUILTIN_MNIST`], in its order (scripts/make_builtin_labels.py
/// made them, after checking the images are the MNIST images they belong to).
const BUILTIN_MNIST_LABELS: &[u8] = include_bytes!("builtin/mnist-labels-5000-idx1-ubyte.gz");
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

/// Images [N, C, H, W] scaled to [-1, 1], a description of where they came from, and their class
/// labels when the data has them.
///
/// Labels ride along whatever the model: an unconditional model ignores them, so labels that are
/// missing, or found next to the images but unusable, are only an error when a class-conditional
/// model asks for them ([`Dataset::check_labels`]). Labels given explicitly are checked at load.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub images: Array4<f32>,
    pub origin: String,
    /// One class per image, in step with `images`.
    pub labels: Option<Labels>,
    /// Why `labels` is `None`, and how to give labels, for [`Dataset::check_labels`].
    unlabelled: String,
}

impl Dataset {
    /// Unlabelled images from elsewhere (tests, generated images).
    pub fn new(images: Array4<f32>, origin: &str) -> Dataset {
        Dataset {
            images,
            origin: origin.to_string(),
            labels: None,
            unlabelled: "they come without labels".into(),
        }
    }

    /// Loads `source` with its labels where it has them (see [`Dataset::load_labelled`]).
    pub fn load(source: &DataSource, size: (usize, usize)) -> Result<Dataset, DataError> {
        Dataset::load_labelled(source, size, None)
    }

    /// Loads `source`. Image folders are resized to `size` = (height, width); IDX data keeps its
    /// own size (checked later by [`Dataset::check_fits`]).
    ///
    /// Labels: the built-in digits have theirs; a folder's are its class sub-folders; IDX images
    /// get `labels_file` (an IDX1 file, which must load and hold one label per image, else the
    /// error is returned here), or without it the file MNIST's naming puts next to them
    /// (`train-images-idx3-ubyte` -> `train-labels-idx1-ubyte`, `.gz` or not), whose problems are
    /// kept for [`Dataset::check_labels`] rather than returned. `labels_file` with the built-in
    /// digits or a folder is an error: they carry their own.
    pub fn load_labelled(
        source: &DataSource,
        size: (usize, usize),
        labels_file: Option<&Path>,
    ) -> Result<Dataset, DataError> {
        let refuse = |file: &Path, why: &str| {
            Err(DataError::Mismatch(format!(
                "labels {} given for {source}, but {why}; `labels` (--labels) is for IDX image files",
                file.display()
            )))
        };
        match source {
            DataSource::Builtin => {
                if let Some(file) = labels_file {
                    return refuse(file, "the built-in digits carry their own labels (0-9)");
                }
                let origin = "built-in MNIST digits";
                let mut d = Dataset::from_idx_bytes(BUILTIN_MNIST, origin)?;
                let values = idx::parse_labels(BUILTIN_MNIST_LABELS, "built-in MNIST labels")?;
                d.labels = Some(Labels::numbered(values, origin));
                d.check_label_count()?;
                Ok(d)
            }
            DataSource::Path(p) if p.is_dir() => {
                if let Some(file) = labels_file {
                    return refuse(
                        file,
                        "a folder's labels are its class sub-folders (one sub-folder of images per class)",
                    );
                }
                let origin = p.display().to_string();
                let (images, labels) = folder::load(p, size)?;
                let unlabelled = format!(
                    "its images are loose in the folder; put each class's images in a sub-folder of its own \
                     ({origin}/<class>/*.png, one sub-folder per class, in name order)"
                );
                Ok(Dataset { images, origin, labels, unlabelled })
            }
            DataSource::Path(p) => {
                let mut d = Dataset::load_idx(p)?;
                if let Some(file) = labels_file {
                    d.labels = Some(Labels::load_idx(file)?);
                    d.check_label_count()?;
                }
                Ok(d)
            }
        }
    }

    /// IDX image bytes, gzipped or raw, held in memory; `origin` names them in messages. Unlabelled.
    pub fn from_idx_bytes(bytes: &[u8], origin: &str) -> Result<Dataset, DataError> {
        Ok(Dataset::new(idx::parse(bytes, origin)?, origin))
    }

    /// An IDX image file, gzipped or raw (told apart by content, not by name), with the labels
    /// MNIST's naming puts next to it when they are there and usable (else why not is kept for
    /// [`Dataset::check_labels`]).
    pub fn load_idx(path: &Path) -> Result<Dataset, DataError> {
        let origin = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| DataError::Io { path: origin.clone(), source })?;
        let mut d = Dataset::from_idx_bytes(&bytes, &origin)?;
        let candidates = labels::named_after(path);
        let give = "give an IDX1 label file with --labels PATH (or `labels = \"PATH\"` in [train])";
        d.unlabelled = match candidates.iter().find(|c| c.is_file()) {
            Some(found) => match Labels::load_idx(found) {
                Ok(labels) => {
                    d.labels = Some(labels);
                    match d.check_label_count() {
                        Ok(()) => return Ok(d),
                        Err(e) => {
                            d.labels = None;
                            format!("the labels file next to it does not fit: {e}; fix it or {give}")
                        }
                    }
                }
                Err(e) => format!("the labels file next to it cannot be used: {e}; fix it or {give}"),
            },
            None if candidates.is_empty() => format!(
                "its name does not follow MNIST's (train-images-idx3-ubyte, whose labels are train-labels-idx1-ubyte \
                 next to it), so no labels file was looked for; {give}"
            ),
            None => format!(
                "there is no labels file next to it ({} or {}, by MNIST's naming); {give}",
                candidates[0].display(),
                candidates[1].display()
            ),
        };
        Ok(d)
    }

    /// Fails naming both counts and both files when the labels are not one per image.
    fn check_label_count(&self) -> Result<(), DataError> {
        match &self.labels {
            Some(l) if l.len() != self.len() => Err(DataError::Mismatch(format!(
                "{} holds {} labels but {} holds {} images; a labels file has one label per image, in the images' order",
                l.origin,
                l.len(),
                self.origin,
                self.len()
            ))),
            _ => Ok(()),
        }
    }

    /// Fails unless every image has a label below `classes`, the number of classes `model_name`
    /// declares in `[condition]`: unlabelled data says why it has no labels and how to give them,
    /// a label out of range names the first such image, its label and the labels' file.
    pub fn check_labels(&self, classes: usize, model_name: &str) -> Result<(), DataError> {
        let declares = format!("{model_name} declares `classes = {classes}` in [condition]");
        match &self.labels {
            None => Err(DataError::Mismatch(format!(
                "{declares}, so it trains on labelled images, but {} has no labels: {}\n  \
                 (the built-in digits, --data builtin, have labels 0-9)",
                self.origin, self.unlabelled
            ))),
            Some(labels) => {
                self.check_label_count()?;
                labels.check_classes(classes, model_name)
            }
        }
    }

    /// The labels of the images at `indices`, in that order (as [`Dataset::gather`]); `None` when
    /// the data is unlabelled.
    pub fn gather_labels(&self, indices: &[usize]) -> Option<Vec<u32>> {
        self.labels.as_ref().map(|l| indices.iter().map(|&i| l.values[i]).collect())
    }

    /// "built-in MNIST digits (5000 images, labels 0-9)", "DIR (300 images, 3 classes: a, b, c)",
    /// "FILE (60000 images, labels 0-9 from LABELS)", for the `data:` line.
    pub fn describe(&self) -> String {
        let labels = match &self.labels {
            Some(l) if l.origin == self.origin => format!(", {}", l.summary()),
            Some(l) => format!(", {} from {}", l.summary(), l.origin),
            None => String::new(),
        };
        format!("{} ({} images{labels})", self.origin, self.len())
    }

    pub fn len(&self) -> usize {
        self.images.len_of(Axis(0))
    }

    /// The first `n` images (all of them when there are fewer).
    pub fn first(mut self, n: usize) -> Dataset {
        let n = n.min(self.len());
        self.images = self.images.slice(s![..n, .., .., ..]).to_owned();
        if let Some(l) = &mut self.labels {
            l.values.truncate(n);
        }
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
