//! Nearest-neighbour upsampling by an integer factor: [C, H, W] -> [C, sH, sW].

use super::{arity, image, Param, ParamSpec, PrimitiveOp, ShapeError};
use super::{Backward, Forward};
use crate::base::Shape;
use crate::kernels::upsample;
use crate::kernels::Real;
use crate::onnx_ir::builder::{attribute, Attr};
use crate::onnx_ir::lower::Lowerer;
use super::lower_grad::{grad_step, reduce_sum, reshape};
use super::{GradValues, LoweredGrads};

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

    fn backward_keeps_inputs(&self) -> bool {
        false
    }

    fn forward<T: Real>(&self, cx: Forward<'_, T>) {
        let (c, h, w) = cx.input_shapes[0].as_image().expect("checked image");
        upsample::forward(cx.batch * c, h, w, self.scale, cx.inputs[0], cx.out);
    }

    /// Each input pixel receives the sum over the pixels it was copied to.
    fn backward<T: Real>(&self, cx: Backward<'_, '_, T>, dy: Vec<T>) {
        let (c, h, w) = cx.input_shapes[0].as_image().expect("checked image");
        let mut dx = cx.pool.take(cx.batch * c * h * w);
        upsample::backward(cx.batch * c, h, w, self.scale, &dy, &mut dx);
        cx.pool.give(dy);
        cx.input_grads.push((0, dx));
    }

    fn torch_layer(&self) -> Option<String> {
        None
    }

    fn torch_forward(&self, _name: &str, ins: &[&str]) -> String {
        format!("F.interpolate({}, scale_factor={}, mode=\"nearest\")", ins[0], self.scale)
    }

    fn torch_helper(&self) -> &'static str {
        ""
    }

    /// asymmetric + floor: output pixel i reads input floor(i / scale), an exact repeat.
    fn lower_onnx(&self, cx: &mut Lowerer<'_>, name: &str, ins: &[&str], out: &str) {
        let (scale, s) = (self.scale, self.scale as f32);
        let scales = cx.b.const_f32(&format!("scales{scale}"), &[4], &[1.0, 1.0, s, s]);
        cx.b.node(
            "Resize",
            name,
            &[ins[0], "", &scales],
            &[out],
            vec![
                attribute("mode", Attr::Str("nearest")),
                attribute("coordinate_transformation_mode", Attr::Str("asymmetric")),
                attribute("nearest_mode", Attr::Str("floor")),
            ],
        );
    }

    /// Each input pixel's gradient is the sum of its scale x scale copies: a Reshape that puts
    /// the copies on their own axes, and a ReduceSum over them.
    fn lower_backward(&self, cx: &mut Lowerer<'_>, name: &str, at: &GradValues<'_>) -> LoweredGrads {
        let (c, h, w) = at.input_shapes[0].as_image().expect("checked image");
        let s = self.scale as i64;
        let dims = [0, c as i64, h as i64, s, w as i64, s];
        let blocks = reshape(cx, grad_step(name, "blocks"), at.dy, &dims);
        let dx = reduce_sum(cx, grad_step(name, "x"), &blocks, &[3, 5], false);
        LoweredGrads { inputs: vec![(0, dx)], params: vec![] }
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
