//! Sinusoidal embedding of `t`: [] -> [dim].
//! half = dim / 2, freq_i = exp(-ln(10000) * i / half) for i in 0..half,
//! out = [sin(t * freq_0..half), cos(t * freq_0..half)]  (the diffusers convention, shift 0).

use super::{arity, Param, ParamSpec, PrimitiveOp, Rank, ShapeError};
use crate::graph::Shape;

#[derive(Debug, Clone, PartialEq)]
pub struct TimestepEmbedding {
    pub dim: usize,
}

impl PrimitiveOp for TimestepEmbedding {
    fn kind(&self) -> &'static str {
        "timestep_embedding"
    }

    fn params(&self) -> Vec<ParamSpec> {
        vec![]
    }

    fn infer_shape(&self, inputs: &[&Shape]) -> Result<Shape, ShapeError> {
        arity(inputs, 1)?;
        if !inputs[0].is_scalar() {
            return Err(ShapeError::WrongRank { input: 0, expected: Rank::Scalar, found: inputs[0].clone() });
        }
        if self.dim < 2 || self.dim % 2 != 0 {
            return Err(ShapeError::OutOfRange {
                param: Param::Dim,
                value: self.dim,
                expected: "an even number of at least 2 (half sines, half cosines)",
            });
        }
        Ok(Shape::vector(self.dim))
    }

    fn flops(&self, _: &[&Shape], _: &Shape) -> u128 {
        3 * self.dim as u128
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_an_even_dimension_and_a_scalar() {
        let t = Shape::scalar();
        assert_eq!(TimestepEmbedding { dim: 32 }.infer_shape(&[&t]), Ok(Shape::vector(32)));
        let odd = TimestepEmbedding { dim: 33 }.infer_shape(&[&t]);
        assert!(matches!(odd, Err(ShapeError::OutOfRange { param: Param::Dim, value: 33, .. })));
        let v = Shape::vector(4);
        let wrong = TimestepEmbedding { dim: 8 }.infer_shape(&[&v]);
        assert!(matches!(wrong, Err(ShapeError::WrongRank { input: 0, expected: Rank::Scalar, .. })));
    }
}
