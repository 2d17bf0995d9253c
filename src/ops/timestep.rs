//! The timesteps `t`: a scalar per image (shape []). Exactly one per graph; it reads nothing.

use super::{arity, ParamSpec, PrimitiveOp, ShapeError};
use super::{Backward, Forward};
use crate::graph::{Node, Shape};
use crate::interp::Real;
use crate::onnx::lower::Lowerer;

#[derive(Debug, Clone, PartialEq)]
pub struct Timestep;

impl PrimitiveOp for Timestep {
    fn kind(&self) -> &'static str {
        "timestep"
    }

    fn params(&self) -> Vec<ParamSpec> {
        vec![]
    }

    fn infer_shape(&self, inputs: &[&Shape]) -> Result<Shape, ShapeError> {
        arity(inputs, 0)?;
        Ok(Shape::scalar())
    }

    fn flops(&self, _: &[&Shape], _: &Shape) -> u128 {
        0
    }

    fn backward_keeps_inputs(&self) -> bool {
        false
    }

    /// Copies the batch's timesteps (the engine passes them as the only input).
    fn forward<T: Real>(&self, cx: Forward<'_, T>) {
        cx.out.copy_from_slice(cx.inputs[0]);
    }

    /// Timesteps are data, not learnt: no gradient.
    fn backward<T: Real>(&self, cx: Backward<'_, '_, T>, dy: Vec<T>) {
        cx.pool.give(dy);
    }

    /// Nothing to emit: the exporter declares `t` as a graph input.
    fn lower_onnx(&self, _: &mut Lowerer<'_>, _: &Node, _: &[&str], _: &str) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_a_scalar_per_image() {
        assert_eq!(Timestep.infer_shape(&[]), Ok(Shape::scalar()));
    }
}
