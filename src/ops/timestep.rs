//! The timesteps `t`: a scalar per image (shape []). Exactly one per graph; it reads nothing.

use super::{arity, PrimitiveOp, ShapeError};
use crate::base::Shape;

#[derive(Debug, Clone, PartialEq)]
pub struct Timestep;

impl PrimitiveOp for Timestep {
    fn kind(&self) -> &'static str {
        "timestep"
    }

    fn infer_shape(&self, inputs: &[&Shape]) -> Result<Shape, ShapeError> {
        arity(inputs, 0)?;
        Ok(Shape::scalar())
    }

    graph_input_methods!();

    fn torch_forward(&self, _name: &str, _ins: &[&str]) -> String {
        "t".into()
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
