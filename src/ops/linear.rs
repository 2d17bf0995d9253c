//! y = x W^T + b: [in] -> [out]. Params: weight [out, in], bias [out].

use super::{arity, vector, Init, ParamSpec, PrimitiveOp, ShapeError};
use crate::graph::Shape;

#[derive(Debug, Clone, PartialEq)]
pub struct Linear {
    pub in_features: usize,
    pub out_features: usize,
}

impl PrimitiveOp for Linear {
    fn kind(&self) -> &'static str {
        "linear"
    }

    fn params(&self) -> Vec<ParamSpec> {
        let (fan_in, out) = (self.in_features, self.out_features);
        vec![
            ParamSpec { name: "weight", shape: vec![out, fan_in], init: Init::KaimingUniform { fan_in } },
            ParamSpec { name: "bias", shape: vec![out], init: Init::BiasUniform { fan_in } },
        ]
    }

    fn infer_shape(&self, inputs: &[&Shape]) -> Result<Shape, ShapeError> {
        arity(inputs, 1)?;
        let d = vector(inputs, 0)?;
        if d != self.in_features {
            return Err(ShapeError::ChannelMismatch { input: 0, expected: self.in_features, found: d });
        }
        Ok(Shape::vector(self.out_features))
    }

    fn flops(&self, _: &[&Shape], output: &Shape) -> u128 {
        2 * self.in_features as u128 * output.numel() as u128
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::Rank;

    #[test]
    fn maps_features_and_names_the_input_at_fault() {
        let op = Linear { in_features: 4, out_features: 6 };
        assert_eq!(op.infer_shape(&[&Shape::vector(4)]), Ok(Shape::vector(6)));
        assert_eq!(
            op.infer_shape(&[&Shape::vector(5)]),
            Err(ShapeError::ChannelMismatch { input: 0, expected: 4, found: 5 })
        );
        let img = Shape::image(4, 2, 2);
        assert!(matches!(op.infer_shape(&[&img]), Err(ShapeError::WrongRank { expected: Rank::Vector, .. })));
        assert_eq!(op.params().iter().map(ParamSpec::numel).sum::<usize>(), 4 * 6 + 6);
        assert_eq!(op.flops(&[&Shape::vector(4)], &Shape::vector(6)), 48);
    }
}
