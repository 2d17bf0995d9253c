//! Class labels of training images, one per image, for class-conditional models: the built-in
//! digits' own, an IDX1 label file (found next to IDX images by MNIST's naming, or given with
//! `--labels`), or the sub-folder each image of a folder sits in.

use std::path::{Path, PathBuf};

use super::{idx, DataError};

/// One class per image, in the images' order.
#[derive(Debug, Clone, PartialEq)]
pub struct Labels {
    /// The class of each image: an index into `names`.
    pub values: Vec<u32>,
    /// The classes' names, index = class. IDX labels are plain numbers, so their names are "0" up to
    /// the largest label present (a class no image has below that still gets its number); a folder's
    /// are its class sub-folders' names.
    pub names: Vec<String>,
    /// Where the labels came from, for messages: a file, or the folder of class sub-folders.
    pub origin: String,
}

impl Labels {
    /// Numbered labels (IDX): named "0" up to the largest value.
    pub fn numbered(values: Vec<u32>, origin: &str) -> Labels {
        let classes = values.iter().max().map_or(0, |&m| m as usize + 1);
        Labels { values, names: (0..classes).map(|c| c.to_string()).collect(), origin: origin.to_string() }
    }

    /// An IDX1 label file, gzipped or raw (told apart by content).
    pub fn load_idx(path: &Path) -> Result<Labels, DataError> {
        let origin = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| DataError::Io { path: origin.clone(), source })?;
        Ok(Labels::numbered(idx::parse_labels(&bytes, &origin)?, &origin))
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Whether the names are just the numbers 0, 1, ... (IDX labels).
    fn numbered_names(&self) -> bool {
        self.names.iter().enumerate().all(|(i, n)| *n == i.to_string())
    }

    /// "labels 0-9", or "3 classes: cat, dog, fox" (at most 8 names shown).
    pub fn summary(&self) -> String {
        match self.names.len() {
            0 => "no labels".into(),
            n if self.numbered_names() => format!("labels 0-{}", n - 1),
            n => format!("{n} classes: {}", self.names_list(8)),
        }
    }

    /// The first `most` names, comma-separated, then "..." if there are more.
    fn names_list(&self, most: usize) -> String {
        let mut shown: Vec<&str> = self.names.iter().take(most).map(String::as_str).collect();
        if self.names.len() > most {
            shown.push("...");
        }
        shown.join(", ")
    }

    /// Fails naming the first image whose label is `classes` or more, the model and the file.
    pub fn check_classes(&self, classes: usize, model_name: &str) -> Result<(), DataError> {
        let Some((i, &label)) = self.values.iter().enumerate().find(|(_, &l)| l as usize >= classes) else {
            return Ok(());
        };
        let range = match classes {
            0 => "no classes".to_string(),
            1 => "class 0 only".to_string(),
            n => format!("classes 0-{}", n - 1),
        };
        let class = match self.names.get(label as usize) {
            Some(name) if *name != label.to_string() => format!(" (class \"{name}\")"),
            _ => String::new(),
        };
        let more = if self.names.len() > classes && !self.numbered_names() {
            format!("; the data has {} classes ({})", self.names.len(), self.names_list(12))
        } else {
            String::new()
        };
        Err(DataError::Mismatch(format!(
            "{}: image {i} has label {label}{class}, outside the model's {range}: {model_name} declares `classes = {classes}` in [condition]{more}",
            self.origin
        )))
    }
}

/// Where MNIST's naming puts the labels of the IDX images at `images`: the file name with `images`
/// made `labels` and `idx3` made `idx1` (`train-images-idx3-ubyte.gz` -> `train-labels-idx1-ubyte.gz`,
/// `t10k-images.idx3-ubyte` -> `t10k-labels.idx1-ubyte`), with the images' compression first, then
/// the other (`.gz` added or taken off). Empty when the name has neither word.
pub fn named_after(images: &Path) -> Vec<PathBuf> {
    let Some(name) = images.file_name().and_then(|n| n.to_str()) else { return Vec::new() };
    let (base, gz) = match name.strip_suffix(".gz") {
        Some(base) => (base, true),
        None => (name, false),
    };
    let labels = base.replace("images", "labels").replace("idx3", "idx1");
    if labels == base {
        return Vec::new();
    }
    let (raw, zipped) = (images.with_file_name(&labels), images.with_file_name(format!("{labels}.gz")));
    if gz {
        vec![zipped, raw]
    } else {
        vec![raw, zipped]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mnist_naming() {
        let p = |s: &str| PathBuf::from(s);
        assert_eq!(
            named_after(&p("d/train-images-idx3-ubyte.gz")),
            [p("d/train-labels-idx1-ubyte.gz"), p("d/train-labels-idx1-ubyte")]
        );
        assert_eq!(
            named_after(&p("t10k-images.idx3-ubyte")),
            [p("t10k-labels.idx1-ubyte"), p("t10k-labels.idx1-ubyte.gz")]
        );
        assert!(named_after(&p("digits.bin")).is_empty());
    }

    #[test]
    fn summaries() {
        assert_eq!(Labels::numbered(vec![3, 0, 9], "f").summary(), "labels 0-9");
        let l = Labels { values: vec![0, 1], names: vec!["cat".into(), "dog".into()], origin: "d".into() };
        assert_eq!(l.summary(), "2 classes: cat, dog");
    }
}
