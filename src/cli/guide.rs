//! Which autoguidance `mdc sample` and `mdc export` use: the guide a training checkpoint keeps,
//! at the weight (`--autoguidance`) and up to the timestep (`--autoguidance-max-t`) asked for, or
//! else the ones the run's recipe sets.

use anyhow::bail;

use super::UsageError;
use crate::diffusion::Steering;
use crate::graph::Graph;
use crate::params::{Params, WeightsFile};

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

/// The guide for the weights `file` (None: freshly initialised weights). None when the weight is
/// 1 or the file keeps no guide; asking for a weight the file cannot give is a usage error, and
/// a run whose recipe wants a guide it has not reached yet (stopped before `guide_at`) gets a
/// note.
pub fn chosen_guide(
    file: Option<&WeightsFile>,
    graph: &Graph,
    requested: SteeringRequest,
) -> anyhow::Result<Option<ChosenGuide>> {
    let kept = match file {
        Some(f) => f.guide(graph)?,
        None => None,
    };
    // The run's recipe says how to steer; plain weights have none (the model alone).
    let recorded =
        file.and_then(WeightsFile::checkpoint).map_or(Steering::everywhere(1.0), |c| c.config.steering());
    let name = file.map_or("random init", WeightsFile::origin);
    match kept {
        Some((step, weights)) => {
            let steering = Steering {
                weight: requested.weight.unwrap_or(recorded.weight),
                max_t: requested.max_t.or(recorded.max_t),
            };
            Ok((steering.weight != 1.0).then_some(ChosenGuide { step, weights, steering }))
        }
        None if requested.weight.is_some_and(|w| w != 1.0) || requested.max_t.is_some() => {
            let flag = if requested.max_t.is_some() { "--autoguidance-max-t" } else { "--autoguidance" };
            bail!(UsageError(format!(
                "{flag}: {name} holds no guide (a training run keeps one once it passes `guide_at` > 0); \
                 leave out {flag}"
            )))
        }
        None => {
            if requested.weight.is_none() && recorded.weight != 1.0 {
                eprintln!(
                    "note: {name} holds no guide yet (the run keeps one from its `guide_at` step on): \
                     no autoguidance"
                );
            }
            Ok(None)
        }
    }
}
