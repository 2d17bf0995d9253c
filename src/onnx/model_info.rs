//! The [`ModelInfo`] of a model file and the weights it runs with: what `mdc export onnx` writes
//! into an export and what `mdc sample` reads from a checkpoint, built one way for both.

use std::path::Path;

use super::{ClassInfo, ModelInfo, ScheduleInfo};
use crate::model::Model;
use crate::params::WeightsFile;

impl ModelInfo {
    /// The description of `model` with the weights of `weights` (None: freshly initialised ones),
    /// `described` as `weights` says in words. The schedule and prediction are the ones a
    /// checkpoint's run trained with, else the model file's `[train]` (else the defaults); the
    /// class names are the ones a checkpoint records. No autoguidance: the caller chooses it.
    pub fn of_model(
        model: &Model,
        weights: Option<&WeightsFile>,
        described: String,
    ) -> anyhow::Result<ModelInfo> {
        let (channels, height, width) = model.graph.input_shape().as_image().ok_or_else(|| {
            anyhow::anyhow!(
                "{}: the input must be an image, found {}",
                model.path.display(),
                model.graph.input_shape()
            )
        })?;
        let checkpoint = weights.and_then(WeightsFile::checkpoint);
        let schedule = match checkpoint {
            Some(c) => ScheduleInfo::of(&c.config),
            None => ScheduleInfo::from_train_table(model.train.as_ref())
                .map_err(|e| anyhow::anyhow!("{}: {e}", model.path.display()))?,
        };
        let names = checkpoint.map(|c| c.class_names.clone()).unwrap_or_default();
        let classes = model.graph.classes().map(|count| ClassInfo { count, names });
        if let (Some(c), Some(w)) = (&classes, weights) {
            if !c.names.is_empty() && c.names.len() != c.count {
                anyhow::bail!(
                    "{}: its metadata `class_names` lists {} names, but {} has {} classes",
                    w.origin(),
                    c.names.len(),
                    model.path.display(),
                    c.count
                );
            }
        }
        Ok(ModelInfo {
            mdc_version: env!("CARGO_PKG_VERSION").to_string(),
            model_file: file_name(&model.path),
            model_hash: model.hash.clone(),
            weights: described,
            schedule,
            channels,
            height,
            width,
            classes,
            autoguidance: None,
        })
    }
}

/// A path's file name (the whole path when it has none).
pub fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| path.display().to_string())
}
