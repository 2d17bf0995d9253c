//! The interpreter as a [`Denoiser`]: a model graph plus weights (EMA weights for sampling).

use ndarray::{Array4, ArrayView1};

use super::Executor;
use crate::diffusion::Denoiser;
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
