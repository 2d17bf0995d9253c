//! 2-D convolution, square kernel, zero padding: [Cin, H, W] -> [Cout, H', W'] with
//! H' = (H + 2 * padding - kernel) / stride + 1. Params: weight [Cout, Cin, k, k], bias [Cout].

use super::{arity, image, Init, Param, ParamSpec, PrimitiveOp, ShapeError};
use crate::graph::Shape;

#[derive(Debug, Clone, PartialEq)]
pub struct Conv2d {
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
}

impl PrimitiveOp for Conv2d {
    fn kind(&self) -> &'static str {
        "conv2d"
    }

    fn params(&self) -> Vec<ParamSpec> {
        let fan_in = self.in_channels * self.kernel * self.kernel;
        vec![
            ParamSpec {
                name: "weight",
                shape: vec![self.out_channels, self.in_channels, self.kernel, self.kernel],
                init: Init::KaimingUniform { fan_in },
            },
            ParamSpec { name: "bias", shape: vec![self.out_channels], init: Init::BiasUniform { fan_in } },
        ]
    }

    fn infer_shape(&self, inputs: &[&Shape]) -> Result<Shape, ShapeError> {
        arity(inputs, 1)?;
        let (c, h, w) = image(inputs, 0)?;
        if c != self.in_channels {
            return Err(ShapeError::ChannelMismatch { input: 0, expected: self.in_channels, found: c });
        }
        for (param, value) in [(Param::Kernel, self.kernel), (Param::Stride, self.stride)] {
            if value == 0 {
                return Err(ShapeError::OutOfRange { param, value, expected: "at least 1" });
            }
        }
        let out = |n: usize| (n + 2 * self.padding).checked_sub(self.kernel).map(|v| v / self.stride + 1);
        match (out(h), out(w)) {
            (Some(oh), Some(ow)) => Ok(Shape::image(self.out_channels, oh, ow)),
            _ => Err(ShapeError::EmptyOutput {
                kernel: self.kernel,
                padding: self.padding,
                height: h,
                width: w,
            }),
        }
    }

    fn flops(&self, _: &[&Shape], output: &Shape) -> u128 {
        2 * (self.in_channels * self.kernel * self.kernel) as u128 * output.numel() as u128
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(kernel: usize, stride: usize, padding: usize) -> Conv2d {
        Conv2d { in_channels: 3, out_channels: 8, kernel, stride, padding }
    }

    #[test]
    fn output_size_follows_kernel_stride_and_padding() {
        let x = Shape::image(3, 28, 28);
        assert_eq!(conv(3, 1, 1).infer_shape(&[&x]), Ok(Shape::image(8, 28, 28)));
        assert_eq!(conv(3, 2, 1).infer_shape(&[&x]), Ok(Shape::image(8, 14, 14)));
        assert_eq!(conv(4, 1, 1).infer_shape(&[&x]), Ok(Shape::image(8, 27, 27)));
        assert_eq!(conv(3, 1, 1).params().iter().map(ParamSpec::numel).sum::<usize>(), 8 * 3 * 9 + 8);
    }

    #[test]
    fn errors_say_which_input_or_parameter() {
        let x = Shape::image(3, 8, 8);
        assert_eq!(
            conv(9, 1, 0).infer_shape(&[&x]),
            Err(ShapeError::EmptyOutput { kernel: 9, padding: 0, height: 8, width: 8 })
        );
        let y = Shape::image(4, 8, 8);
        assert_eq!(
            conv(3, 1, 1).infer_shape(&[&y]),
            Err(ShapeError::ChannelMismatch { input: 0, expected: 3, found: 4 })
        );
        assert!(matches!(
            conv(3, 0, 1).infer_shape(&[&x]),
            Err(ShapeError::OutOfRange { param: Param::Stride, value: 0, .. })
        ));
    }
}
