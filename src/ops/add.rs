//! Elementwise sum of two inputs of the same shape.

use super::{arity, ParamSpec, PrimitiveOp, ShapeError};
use crate::graph::Shape;

#[derive(Debug, Clone, PartialEq)]
pub struct Add;

impl PrimitiveOp for Add {
    fn kind(&self) -> &'static str {
        "add"
    }

    fn params(&self) -> Vec<ParamSpec> {
        vec![]
    }

    fn infer_shape(&self, inputs: &[&Shape]) -> Result<Shape, ShapeError> {
        arity(inputs, 2)?;
        if inputs[0] != inputs[1] {
            let found = (inputs[0].clone(), inputs[1].clone());
            return Err(ShapeError::ShapeMismatch { inputs: (0, 1), found });
        }
        Ok(inputs[0].clone())
    }

    fn flops(&self, _: &[&Shape], output: &Shape) -> u128 {
        output.numel() as u128
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_equal_shapes() {
        let (a, b) = (Shape::image(4, 8, 8), Shape::image(4, 8, 7));
        assert_eq!(Add.infer_shape(&[&a, &a]), Ok(a.clone()));
        assert_eq!(
            Add.infer_shape(&[&a, &b]),
            Err(ShapeError::ShapeMismatch { inputs: (0, 1), found: (a.clone(), b.clone()) })
        );
    }
}
