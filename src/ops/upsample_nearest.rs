//! Nearest-neighbour upsampling by an integer factor: [C, H, W] -> [C, sH, sW].

use super::{arity, image, Param, ParamSpec, PrimitiveOp, ShapeError};
use crate::graph::Shape;

#[derive(Debug, Clone, PartialEq)]
pub struct UpsampleNearest {
    pub scale: usize,
}

impl PrimitiveOp for UpsampleNearest {
    fn kind(&self) -> &'static str {
        "upsample_nearest"
    }

    fn params(&self) -> Vec<ParamSpec> {
        vec![]
    }

    fn infer_shape(&self, inputs: &[&Shape]) -> Result<Shape, ShapeError> {
        arity(inputs, 1)?;
        let (c, h, w) = image(inputs, 0)?;
        if self.scale == 0 {
            return Err(ShapeError::OutOfRange { param: Param::Scale, value: 0, expected: "at least 1" });
        }
        Ok(Shape::image(c, h * self.scale, w * self.scale))
    }

    fn flops(&self, _: &[&Shape], output: &Shape) -> u128 {
        output.numel() as u128
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_height_and_width() {
        let x = Shape::image(3, 7, 5);
        assert_eq!(UpsampleNearest { scale: 2 }.infer_shape(&[&x]), Ok(Shape::image(3, 14, 10)));
        assert!(UpsampleNearest { scale: 0 }.infer_shape(&[&x]).is_err());
    }
}
