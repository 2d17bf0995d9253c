//! What the interpreter hands an op's forward and backward: the batch's values of its inputs,
//! its parameters, buffers from the engine's pool and the worker threads. The engine owns
//! liveness (which values stay alive), gradient accumulation and fusion decisions; the op
//! modules only compute.

use crate::base::Shape;
use crate::kernels::{Pool, Real, Workers};

/// One node's forward over a batch.
pub struct Forward<'a, T: Real> {
    pub batch: usize,
    /// The inputs' values, flat NCHW. The graph's own inputs (`x`, `t`) get the batch's images
    /// or timesteps as their only input.
    pub inputs: &'a [&'a [T]],
    pub input_shapes: &'a [&'a Shape],
    /// The node's output shape (per image).
    pub shape: &'a Shape,
    /// The node's parameters, in [`super::PrimitiveOp::params`] order.
    pub params: &'a [&'a [T]],
    /// Where the output goes: `batch * shape.numel()` elements, contents unspecified.
    pub out: &'a mut [T],
    /// The worker threads and their scratch; `workers.precision` is the arithmetic of the conv
    /// and linear products (`Executor::with_precision`), which their kernels read from here.
    pub workers: &'a mut Workers<T>,
    pub pool: &'a mut Pool<T>,
    /// Training: a slot for what the backward needs besides the inputs (GroupNorm statistics).
    /// `None` in inference, where such buffers go straight back to the pool.
    pub saved: Option<&'a mut Option<Vec<T>>>,
    /// What this forward computes after the node's own op, in the same pass (ops that cannot
    /// fuse are only ever given [`Epilogue::None`]: see `interp/schedule.rs`).
    pub epilogue: Epilogue,
}

/// Nodes the engine fuses into a GroupNorm's pass: the SiLU that is its only reader, and the
/// per-channel bias (a ResBlock's time bias) that is in turn that SiLU's only reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Epilogue {
    None,
    Silu,
    /// The bias [N, C] is the forward's input 1; the backward returns its gradient as input 1's.
    SiluThenChannelBias,
}

/// One node's backward over the batch of the last training forward.
pub struct Backward<'a, 'g, T: Real> {
    pub batch: usize,
    /// The node's own inputs' forward values (not a fused bias) when the op keeps them
    /// ([`super::PrimitiveOp::backward_keeps_inputs`]), else empty.
    pub inputs: &'a [&'a [T]],
    pub input_shapes: &'a [&'a Shape],
    pub shape: &'a Shape,
    pub params: &'a [&'a [T]],
    /// The gradients of the node's parameters, overwritten (not accumulated).
    pub param_grads: &'a mut [&'g mut [T]],
    /// Which inputs need a gradient (an op may skip computing the others).
    pub wants: &'a [bool],
    /// What the training forward put in its `saved` slot.
    pub saved: Option<&'a [T]>,
    /// What the forward fused after the node: the gradient arriving is that of its last step.
    pub epilogue: Epilogue,
    /// As in [`Forward::workers`]: the backward's products run at `workers.precision` too.
    pub workers: &'a mut Workers<T>,
    pub pool: &'a mut Pool<T>,
    /// Gradients for the inputs, as (input index, buffer from `pool`); the engine adds them up.
    pub input_grads: &'a mut Vec<(usize, Vec<T>)>,
}

/// The gradients of a weight and a bias (an op's two parameters).
pub(crate) fn weight_and_bias<'a, T>(grads: &'a mut [&mut [T]]) -> (&'a mut [T], &'a mut [T]) {
    match grads {
        [w, b] => (&mut **w, &mut **b),
        _ => unreachable!("an op with a weight and a bias has two parameter gradients"),
    }
}
