//! [C, H, W] + [C] broadcast over H, W (the projected time embedding added to a feature map).

use super::{arity, image, vector, ParamSpec, PrimitiveOp, ShapeError};
use crate::graph::Shape;

#[derive(Debug, Clone, PartialEq)]
pub struct AddChannelBias;

impl PrimitiveOp for AddChannelBias {
    fn kind(&self) -> &'static str {
        "add_channel_bias"
    }

    fn params(&self) -> Vec<ParamSpec> {
        vec![]
    }

    fn infer_shape(&self, inputs: &[&Shape]) -> Result<Shape, ShapeError> {
        arity(inputs, 2)?;
        let (c, _, _) = image(inputs, 0)?;
        let d = vector(inputs, 1)?;
        if d != c {
            return Err(ShapeError::ChannelMismatch { input: 1, expected: c, found: d });
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
    fn the_bias_has_one_value_per_channel() {
        let x = Shape::image(4, 3, 3);
        assert_eq!(AddChannelBias.infer_shape(&[&x, &Shape::vector(4)]), Ok(x.clone()));
        assert_eq!(
            AddChannelBias.infer_shape(&[&x, &Shape::vector(5)]),
            Err(ShapeError::ChannelMismatch { input: 1, expected: 4, found: 5 })
        );
    }
}
