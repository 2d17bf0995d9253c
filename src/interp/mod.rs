//! The interpreter: runs a checked primitive [`Graph`] forward, and backward for training.
//!
//! API contract (used by training, sampling, benchmarks and the ONNX parity tests):
//! - [`Executor::new`] takes the graph once; buffers are reused across calls.
//! - [`Executor::forward`] is inference: nothing is kept for backward.
//! - [`Executor::forward_train`] keeps what backward needs; [`Executor::backward`] then writes the
//!   gradient of `sum(dy * y)` with respect to every parameter into `grads` (same order as Params),
//!   overwriting what was there.
//!
//! The work is done by [`Engine`], generic over the scalar so gradient checks can run in f64.

mod denoiser;
mod engine;
mod schedule;

pub use denoiser::{sample_images, InterpDenoiser};
pub use engine::Engine;

use ndarray::{Array4, ArrayView1, ArrayView4};

use crate::graph::Graph;
use crate::kernels::Precision;
use crate::params::Params;

pub struct Executor {
    engine: Engine<f32>,
}

impl Executor {
    pub fn new(graph: Graph) -> Executor {
        Executor { engine: Engine::new(graph) }
    }

    /// Runs the conv and linear products at `precision` (callers go through
    /// [`crate::kernels::bf16::resolve`]: without AVX512_BF16, bf16 runs on the slow portable
    /// reference kernel).
    pub fn with_precision(self, precision: Precision) -> Executor {
        Executor { engine: self.engine.with_precision(precision) }
    }

    pub fn graph(&self) -> &Graph {
        self.engine.graph()
    }

    /// Most bytes of activations, gradients and saved statistics held at once so far.
    pub fn peak_bytes(&self) -> usize {
        self.engine.peak_bytes()
    }

    /// Time per op kind so far when the `MDC_PROFILE` environment variable is set, else empty.
    pub fn profile_report(&self) -> String {
        self.engine.profile_report()
    }

    /// Predicted output for images `x` [N, C, H, W] at timesteps `t` [N] (a conditional model
    /// gets the null label: see [`Self::forward_labeled`]).
    pub fn forward(&mut self, params: &Params, x: ArrayView4<f32>, t: ArrayView1<f32>) -> Array4<f32> {
        self.forward_labeled(params, x, t, None, false)
    }

    /// Like [`Self::forward`], keeping the activations [`Self::backward`] needs.
    pub fn forward_train(&mut self, params: &Params, x: ArrayView4<f32>, t: ArrayView1<f32>) -> Array4<f32> {
        self.forward_labeled(params, x, t, None, true)
    }

    /// Gradients of `sum(dy * y)` for the last `forward_train`, written into `grads`.
    pub fn backward(&mut self, params: &Params, dy: ArrayView4<f32>, grads: &mut Params) {
        self.check_params(params, "params");
        self.check_params(grads, "grads");
        let dy = dy.as_standard_layout();
        let p = param_slices(params);
        let mut g: Vec<&mut [f32]> =
            grads.tensors.iter_mut().map(|t| t.as_slice_mut().expect("parameters are contiguous")).collect();
        self.engine.backward(&p, dy.as_slice().expect("standard layout"), &mut g);
    }

    /// [`Self::forward`] (or, with `train`, [`Self::forward_train`]) with class labels `y` [N]
    /// for a conditional model: 0..classes-1, or `classes` for the null label. None: all null.
    pub fn forward_labeled(
        &mut self,
        params: &Params,
        x: ArrayView4<f32>,
        t: ArrayView1<f32>,
        y: Option<&[u32]>,
        train: bool,
    ) -> Array4<f32> {
        self.check_params(params, "params");
        let (n, c, h, w) = x.dim();
        let expected = self.graph().input_shape().clone();
        assert_eq!(
            [c, h, w][..],
            expected.0[..],
            "interp: the model expects images {expected}, found [{n}, {c}, {h}, {w}]"
        );
        assert_eq!(t.len(), n, "interp: {n} images but {} timesteps", t.len());
        let x = x.as_standard_layout();
        let t: Vec<f32> = t.to_vec();
        let p = param_slices(params);
        if let Some(y) = y {
            assert_eq!(y.len(), n, "interp: {n} images but {} labels", y.len());
            let classes =
                self.graph().classes().expect("interp: labels given to a model without a [condition]");
            assert!(
                y.iter().all(|&c| c as usize <= classes),
                "interp: a label above the null label {classes}"
            );
        }
        let y: Option<Vec<f32>> = y.map(|y| y.iter().map(|&c| c as f32).collect());
        let out = self.engine.forward(&p, x.as_slice().expect("standard layout"), &t, y.as_deref(), n, train);
        let (oc, oh, ow) = self.graph().output_shape().as_image().expect("the model outputs an image");
        Array4::from_shape_vec((n, oc, oh, ow), out).expect("output length matches its shape")
    }

    fn check_params(&self, params: &Params, what: &str) {
        let specs = self.graph().params();
        assert_eq!(params.tensors.len(), specs.len(), "interp: {what} has the wrong number of tensors");
        for ((name, spec), t) in specs.iter().zip(&params.tensors) {
            assert_eq!(t.shape(), &spec.shape[..], "interp: {what} tensor `{name}` has the wrong shape");
        }
    }
}

fn param_slices(params: &Params) -> Vec<&[f32]> {
    params.tensors.iter().map(|t| t.as_slice().expect("parameters are contiguous")).collect()
}
