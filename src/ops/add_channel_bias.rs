//! [C, H, W] + [C] broadcast over H, W (the projected time embedding added to a feature map).

use super::{image_and_channel_vector, ParamSpec, PrimitiveOp, ShapeError};
use super::{Backward, Forward};
use crate::base::Shape;
use crate::kernels::elementwise;
use crate::kernels::Real;
use crate::onnx_ir::lower::Lowerer;
use super::lower_grad::{grad_step, reduce_sum};
use super::{GradValues, LoweredGrads};

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
        image_and_channel_vector(inputs)
    }

    fn flops(&self, _: &[&Shape], output: &Shape) -> u128 {
        output.numel() as u128
    }

    fn backward_keeps_inputs(&self) -> bool {
        false
    }

    fn forward<T: Real>(&self, cx: Forward<'_, T>) {
        let c = cx.shape.channels().unwrap_or(1);
        elementwise::add_channel_bias(cx.shape.numel() / c, cx.inputs[0], cx.inputs[1], cx.out);
    }

    /// The map receives dy; the bias its sum over H, W.
    fn backward<T: Real>(&self, cx: Backward<'_, '_, T>, dy: Vec<T>) {
        let c = cx.shape.channels().unwrap_or(1);
        let mut db = cx.pool.take(cx.batch * c);
        elementwise::add_channel_bias_backward(cx.shape.numel() / c, &dy, &mut db);
        cx.input_grads.push((1, db));
        cx.input_grads.push((0, dy));
    }

    fn torch_layer(&self) -> Option<String> {
        None
    }

    /// [N, C] -> [N, C, 1, 1], broadcast over H, W.
    fn torch_forward(&self, _name: &str, ins: &[&str]) -> String {
        format!("{} + {}[:, :, None, None]", ins[0], ins[1])
    }

    fn torch_helper(&self) -> &'static str {
        ""
    }

    /// [N, C] -> [N, C, 1, 1], broadcast over H, W.
    fn lower_onnx(&self, cx: &mut Lowerer<'_>, name: &str, ins: &[&str], out: &str) {
        let axes = cx.b.const_i64(&[2, 3]);
        let u = format!("{name}/unsqueeze");
        cx.b.node("Unsqueeze", &u, &[ins[1], &axes], &[&u], vec![]);
        cx.b.node("Add", name, &[ins[0], &u], &[out], vec![]);
    }

    /// The map receives dy; the per-channel vector its sum over H and W.
    fn lower_backward(&self, cx: &mut Lowerer<'_>, name: &str, at: &GradValues<'_>) -> LoweredGrads {
        let mut grads = LoweredGrads::default();
        if at.wants[0] {
            grads.inputs.push((0, at.dy.to_string()));
        }
        if at.wants[1] {
            grads.inputs.push((1, reduce_sum(cx, grad_step(name, "bias"), at.dy, &[2, 3], false)));
        }
        grads
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
