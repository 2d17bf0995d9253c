//! The interpreter as a [`Denoiser`]: a model graph plus weights (EMA weights for sampling).

use ndarray::{Array4, ArrayView1};

use super::Executor;
use crate::diffusion::{sample_with_progress, AutoGuided, Denoiser, NoiseSchedule, SampleOptions, Steering};
use crate::graph::Graph;
use crate::params::Params;

pub struct InterpDenoiser {
    pub executor: Executor,
    pub params: Params,
}

impl Denoiser for InterpDenoiser {
    fn predict_noise(
        &mut self,
        x: &Array4<f32>,
        t: &[f32],
        y: Option<&[u32]>,
    ) -> anyhow::Result<Array4<f32>> {
        if y.is_some() && self.executor.graph().classes().is_none() {
            anyhow::bail!("class labels were given, but the model has no [condition]");
        }
        Ok(self.executor.forward_labeled(&self.params, x.view(), ArrayView1::from(t), y, false))
    }

    fn null_label(&self) -> Option<u32> {
        self.executor.graph().classes().map(|c| c as u32)
    }
}

/// Samples images with the interpreter, showing a progress bar when asked; with `guide` =
/// (guide weights, how to steer), autoguided ([`AutoGuided`]).
pub fn sample_images(
    graph: &Graph,
    params: Params,
    guide: Option<(Params, Steering)>,
    schedule: &NoiseSchedule,
    image: [usize; 3],
    opts: &SampleOptions,
    progress: bool,
) -> anyhow::Result<Array4<f32>> {
    let mut den = InterpDenoiser { executor: Executor::new(graph.clone()), params };
    match guide {
        None => sample_with_progress(&mut den, schedule, image, opts, progress),
        Some((weights, steering)) => {
            let mut guide = InterpDenoiser { executor: Executor::new(graph.clone()), params: weights };
            let mut guided = AutoGuided { model: &mut den, guide: &mut guide, steering };
            sample_with_progress(&mut guided, schedule, image, opts, progress)
        }
    }
}
