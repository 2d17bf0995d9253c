//! GroupNorm over (C/groups, H, W) per group, affine: [C, H, W] -> [C, H, W].
//! Params: weight [C] (init 1), bias [C] (init 0).

use super::{arity, image, Init, Param, ParamSpec, PrimitiveOp, ShapeError};
use crate::graph::Shape;

#[derive(Debug, Clone, PartialEq)]
pub struct GroupNorm {
    pub groups: usize,
    pub channels: usize,
    pub eps: f32,
}

impl PrimitiveOp for GroupNorm {
    fn kind(&self) -> &'static str {
        "group_norm"
    }

    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec { name: "weight", shape: vec![self.channels], init: Init::Constant(1.0) },
            ParamSpec { name: "bias", shape: vec![self.channels], init: Init::Constant(0.0) },
        ]
    }

    fn infer_shape(&self, inputs: &[&Shape]) -> Result<Shape, ShapeError> {
        arity(inputs, 1)?;
        let (c, _, _) = image(inputs, 0)?;
        if c != self.channels {
            return Err(ShapeError::ChannelMismatch { input: 0, expected: self.channels, found: c });
        }
        if self.groups == 0 || self.channels % self.groups != 0 {
            return Err(ShapeError::NotDivisible {
                param: Param::Groups,
                value: self.groups,
                channels: self.channels,
            });
        }
        Ok(inputs[0].clone())
    }

    fn flops(&self, _: &[&Shape], output: &Shape) -> u128 {
        // mean, variance, normalise, affine
        8 * output.numel() as u128
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_must_divide_the_channels() {
        let x = Shape::image(18, 4, 4);
        let ok = GroupNorm { groups: 6, channels: 18, eps: 1e-5 };
        assert_eq!(ok.infer_shape(&[&x]), Ok(x.clone()));
        let bad = GroupNorm { groups: 4, channels: 18, eps: 1e-5 };
        let e = bad.infer_shape(&[&x]).unwrap_err();
        assert_eq!(e, ShapeError::NotDivisible { param: Param::Groups, value: 4, channels: 18 });
        assert_eq!(e.to_string(), "18 channels are not divisible into 4 groups");
    }
}
