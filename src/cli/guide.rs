//! Which autoguidance `mdc sample` and `mdc export` use: the guide a training checkpoint keeps,
//! at the weight `--autoguidance` asks for or else the one the run's recipe sets.

use std::collections::HashMap;
use std::path::Path;

use anyhow::bail;

use super::UsageError;
use crate::graph::Graph;
use crate::params::Params;
use crate::train::recorded_autoguidance;

/// A guide to steer by: the EMA weights of `step`, at weight `weight` (never 1).
pub struct ChosenGuide {
    pub step: u64,
    pub weights: Params,
    pub weight: f32,
}

/// The guide for the weights file `path` (None: freshly initialised weights) whose metadata is
/// `meta`. None when the weight is 1 or the file keeps no guide; asking for a weight the file
/// cannot give is a usage error, and a run whose recipe wants a guide it has not reached yet
/// (stopped before `guide_at`) gets a note.
pub fn chosen_guide(
    path: Option<&Path>,
    graph: &Graph,
    meta: &HashMap<String, String>,
    requested: Option<f32>,
) -> anyhow::Result<Option<ChosenGuide>> {
    let kept = match path {
        Some(p) => Params::load_guide(p, graph)?,
        None => None,
    };
    let file = path.map_or("random init".to_string(), |p| p.display().to_string());
    match kept {
        Some((step, weights)) => {
            let weight = requested.unwrap_or_else(|| recorded_autoguidance(meta));
            Ok((weight != 1.0).then_some(ChosenGuide { step, weights, weight }))
        }
        None if requested.is_some_and(|w| w != 1.0) => bail!(UsageError(format!(
            "--autoguidance: {file} holds no guide (a training run keeps one once it passes `guide_at` > 0); \
             leave out --autoguidance"
        ))),
        None => {
            if requested.is_none() && recorded_autoguidance(meta) != 1.0 {
                eprintln!(
                    "note: {file} holds no guide yet (the run keeps one from its `guide_at` step on): \
                     no autoguidance"
                );
            }
            Ok(None)
        }
    }
}
