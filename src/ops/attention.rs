//! Multi-head self-attention over the H*W positions.
//! Input: q, k, v stacked on channels [3C, H, W] (q = channels 0..C, k = C..2C, v = 2C..3C,
//! head h uses channels h*C/heads..(h+1)*C/heads of each). Output [C, H, W]:
//! softmax(q^T k / sqrt(C/heads)) applied to v, heads concatenated back on channels.

use super::{arity, image, Param, ParamSpec, PrimitiveOp, ShapeError};
use crate::graph::Shape;

#[derive(Debug, Clone, PartialEq)]
pub struct Attention {
    pub channels: usize,
    pub heads: usize,
}

impl PrimitiveOp for Attention {
    fn kind(&self) -> &'static str {
        "attention"
    }

    fn params(&self) -> Vec<ParamSpec> {
        vec![]
    }

    fn infer_shape(&self, inputs: &[&Shape]) -> Result<Shape, ShapeError> {
        arity(inputs, 1)?;
        let (c, h, w) = image(inputs, 0)?;
        if c != 3 * self.channels {
            return Err(ShapeError::ChannelMismatch { input: 0, expected: 3 * self.channels, found: c });
        }
        if self.heads == 0 || self.channels % self.heads != 0 {
            return Err(ShapeError::NotDivisible {
                param: Param::Heads,
                value: self.heads,
                channels: self.channels,
            });
        }
        Ok(Shape::image(self.channels, h, w))
    }

    fn flops(&self, inputs: &[&Shape], _: &Shape) -> u128 {
        let positions = inputs[0].as_image().map(|(_, h, w)| (h * w) as u128).unwrap_or(0);
        // q^T k and scores @ v: 2 * 2 * P * P * C over all heads; softmax ~5 per score
        4 * positions * positions * self.channels as u128 + 5 * positions * positions * self.heads as u128
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_stacked_qkv_and_heads_divide_channels() {
        let qkv = Shape::image(12, 3, 3);
        assert_eq!(Attention { channels: 4, heads: 2 }.infer_shape(&[&qkv]), Ok(Shape::image(4, 3, 3)));
        let e = Attention { channels: 4, heads: 3 }.infer_shape(&[&qkv]).unwrap_err();
        assert_eq!(e.to_string(), "3 heads do not divide 4 channels");
        assert_eq!(
            Attention { channels: 5, heads: 1 }.infer_shape(&[&qkv]),
            Err(ShapeError::ChannelMismatch { input: 0, expected: 15, found: 12 })
        );
    }
}
