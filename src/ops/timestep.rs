//! The timesteps `t`: a scalar per image (shape []). Exactly one per graph; it reads nothing.

use super::{arity, ParamSpec, PrimitiveOp, ShapeError};
use crate::graph::Shape;

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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_a_scalar_per_image() {
        assert_eq!(Timestep.infer_shape(&[]), Ok(Shape::scalar()));
    }
}
