//! x * sigmoid(x), elementwise, any shape.

use super::{arity, ParamSpec, PrimitiveOp, ShapeError};
use crate::graph::Shape;

#[derive(Debug, Clone, PartialEq)]
pub struct Silu;

impl PrimitiveOp for Silu {
    fn kind(&self) -> &'static str {
        "silu"
    }

    fn params(&self) -> Vec<ParamSpec> {
        vec![]
    }

    fn infer_shape(&self, inputs: &[&Shape]) -> Result<Shape, ShapeError> {
        arity(inputs, 1)?;
        Ok(inputs[0].clone())
    }

    fn flops(&self, _: &[&Shape], output: &Shape) -> u128 {
        4 * output.numel() as u128
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_shape() {
        let v = Shape::vector(7);
        assert_eq!(Silu.infer_shape(&[&v]), Ok(v.clone()));
        assert_eq!(Silu.infer_shape(&[&v, &v]), Err(ShapeError::Arity { expected: 1, found: 2 }));
    }
}
