//! Which autoguidance `mdc sample` and `mdc export` use: the guide a training checkpoint keeps,
//! at the weight (`--autoguidance`) and up to the timestep (`--autoguidance-max-t`) asked for, or
//! else the ones the run's recipe sets.

use std::collections::HashMap;
use std::path::Path;

use anyhow::bail;

use super::UsageError;
use crate::diffusion::Steering;
use crate::graph::Graph;
use crate::params::Params;
use crate::train::recorded_autoguidance;

/// A guide to steer by: the EMA weights of `step`, as `steering` says (its weight never 1).
pub struct ChosenGuide {
    pub step: u64,
    pub weights: Params,
    pub steering: Steering,
}

/// What the command line asks of autoguidance; None leaves the run's recipe to decide.
#[derive(Debug, Clone, Copy, Default)]
pub struct SteeringRequest {
    pub weight: Option<f32>,
    pub max_t: Option<u64>,
}

/// The guide for the weights file `path` (None: freshly initialised weights) whose metadata is
/// `meta`. None when the weight is 1 or the file keeps no guide; asking for a weight the file
/// cannot give is a usage error, and a run whose recipe wants a guide it has not reached yet
/// (stopped before `guide_at`) gets a note.
pub fn chosen_guide(
    path: Option<&Path>,
    graph: &Graph,
    meta: &HashMap<String, String>,
    requested: SteeringRequest,
) -> anyhow::Result<Option<ChosenGuide>> {
    let kept = match path {
        Some(p) => Params::load_guide(p, graph)?,
        None => None,
    };
    let file = path.map_or("random init".to_string(), |p| p.display().to_string());
    match kept {
        Some((step, weights)) => {
            let recorded = recorded_autoguidance(meta);
            let steering = Steering {
                weight: requested.weight.unwrap_or(recorded.weight),
                max_t: requested.max_t.or(recorded.max_t),
            };
            Ok((steering.weight != 1.0).then_some(ChosenGuide { step, weights, steering }))
        }
        None if requested.weight.is_some_and(|w| w != 1.0) || requested.max_t.is_some() => {
            let flag = if requested.max_t.is_some() { "--autoguidance-max-t" } else { "--autoguidance" };
            bail!(UsageError(format!(
                "{flag}: {file} holds no guide (a training run keeps one once it passes `guide_at` > 0); \
                 leave out {flag}"
            )))
        }
        None => {
            if requested.weight.is_none() && recorded_autoguidance(meta).weight != 1.0 {
                eprintln!(
                    "note: {file} holds no guide yet (the run keeps one from its `guide_at` step on): \
                     no autoguidance"
                );
            }
            Ok(None)
        }
    }
}
