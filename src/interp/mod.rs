//! The interpreter: runs a checked primitive [`Graph`] forward, and backward for training.
//!
//! API contract (used by training, sampling, benchmarks and the ONNX parity tests):
//! - [`Executor::new`] takes the graph once; buffers are reused across calls.
//! - [`Executor::forward`] is inference: nothing is kept for backward.
//! - [`Executor::forward_train`] keeps what backward needs; [`Executor::backward`] then writes the
//!   gradient of `sum(dy * y)` with respect to every parameter into `grads` (same order as Params).

use ndarray::{Array4, ArrayView1, ArrayView4};

use crate::graph::Graph;
use crate::params::Params;

pub struct Executor {
    graph: Graph,
}

impl Executor {
    pub fn new(graph: Graph) -> Executor {
        Executor { graph }
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Predicted output for images `x` [N, C, H, W] at timesteps `t` [N].
    pub fn forward(&mut self, params: &Params, x: ArrayView4<f32>, t: ArrayView1<f32>) -> Array4<f32> {
        let _ = (params, x, t);
        todo!("interp: forward")
    }

    /// Like [`Self::forward`], keeping the activations [`Self::backward`] needs.
    pub fn forward_train(&mut self, params: &Params, x: ArrayView4<f32>, t: ArrayView1<f32>) -> Array4<f32> {
        let _ = (params, x, t);
        todo!("interp: forward_train")
    }

    /// Gradients of `sum(dy * y)` for the last `forward_train`, written into `grads`.
    pub fn backward(&mut self, params: &Params, dy: ArrayView4<f32>, grads: &mut Params) {
        let _ = (params, dy, grads);
        todo!("interp: backward")
    }
}
