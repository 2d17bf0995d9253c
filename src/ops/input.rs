//! The noisy image `x`: [C, H, W] per image. Exactly one per graph; it reads nothing.

use super::{arity, ParamSpec, PrimitiveOp, ShapeError};
use super::{Backward, Forward};
use crate::graph::{Node, Shape};
use crate::interp::Real;
use crate::onnx::lower::Lowerer;

#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

impl PrimitiveOp for Input {
    fn kind(&self) -> &'static str {
        "input"
    }

    fn params(&self) -> Vec<ParamSpec> {
        vec![]
    }

    fn infer_shape(&self, inputs: &[&Shape]) -> Result<Shape, ShapeError> {
        arity(inputs, 0)?;
        Ok(Shape::image(self.channels, self.height, self.width))
    }

    fn flops(&self, _: &[&Shape], _: &Shape) -> u128 {
        0
    }

    fn backward_keeps_inputs(&self) -> bool {
        false
    }

    /// Copies the batch's images (the engine passes them as the only input).
    fn forward<T: Real>(&self, cx: Forward<'_, T>) {
        cx.out.copy_from_slice(cx.inputs[0]);
    }

    /// Nothing upstream: the engine reads the image gradient off this node when asked.
    fn backward<T: Real>(&self, cx: Backward<'_, '_, T>, dy: Vec<T>) {
        cx.pool.give(dy);
    }

    /// Nothing to emit: the exporter declares `x` as a graph input.
    fn lower_onnx(&self, _: &mut Lowerer<'_>, _: &Node, _: &[&str], _: &str) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_an_image_and_reads_nothing() {
        let op = Input { channels: 3, height: 8, width: 6 };
        assert_eq!(op.infer_shape(&[]), Ok(Shape::image(3, 8, 6)));
        let s = Shape::image(3, 8, 6);
        assert_eq!(op.infer_shape(&[&s]), Err(ShapeError::Arity { expected: 0, found: 1 }));
    }
}
