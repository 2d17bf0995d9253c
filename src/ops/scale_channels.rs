//! [C, H, W] * (1 + [C]) broadcast over H, W: the FiLM scale a resblock with `film = 1` applies
//! to its normalised features, so that the time embedding (and a class label added to it) can
//! reshape the features and not only shift them. The `1 +` makes a zero scale the identity.

use super::{image_and_channel_vector, ParamSpec, PrimitiveOp, ShapeError};
use super::{Backward, Forward};
use crate::base::Shape;
use crate::kernels::elementwise;
use crate::kernels::Real;
use crate::onnx_ir::lower::Lowerer;
use super::lower_grad::{emit, grad_step, reduce_sum};
use super::{GradValues, LoweredGrads};

#[derive(Debug, Clone, PartialEq)]
pub struct ScaleChannels;

impl PrimitiveOp for ScaleChannels {
    fn kind(&self) -> &'static str {
        "scale_channels"
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

    /// dx needs the scale, dscale needs x.
    fn backward_keeps_inputs(&self) -> bool {
        true
    }

    fn forward<T: Real>(&self, cx: Forward<'_, T>) {
        let c = cx.shape.channels().unwrap_or(1);
        elementwise::scale_channels(cx.shape.numel() / c, cx.inputs[0], cx.inputs[1], cx.out);
    }

    fn backward<T: Real>(&self, cx: Backward<'_, '_, T>, dy: Vec<T>) {
        let c = cx.shape.channels().unwrap_or(1);
        let mut dscale = cx.pool.take(cx.batch * c);
        let mut dx = cx.pool.take(dy.len());
        let (x, scale) = (cx.inputs[0], cx.inputs[1]);
        elementwise::scale_channels_backward(cx.shape.numel() / c, x, scale, &dy, &mut dx, &mut dscale);
        cx.pool.give(dy);
        cx.input_grads.push((1, dscale));
        cx.input_grads.push((0, dx));
    }

    fn torch_layer(&self) -> Option<String> {
        None
    }

    /// `1 +` first, then the product, in the interpreter's order.
    fn torch_forward(&self, _name: &str, ins: &[&str]) -> String {
        format!("{} * (1.0 + {}[:, :, None, None])", ins[0], ins[1])
    }

    fn torch_helper(&self) -> &'static str {
        ""
    }

    /// [N, C] -> [N, C, 1, 1], plus one, times the map.
    fn lower_onnx(&self, cx: &mut Lowerer<'_>, name: &str, ins: &[&str], out: &str) {
        let axes = cx.b.const_i64(&[2, 3]);
        let one = cx.b.const_f32("one", &[], &[1.0]);
        let u = format!("{name}/unsqueeze");
        let f = format!("{name}/factor");
        cx.b.node("Unsqueeze", &u, &[ins[1], &axes], &[&u], vec![]);
        cx.b.node("Add", &f, &[&u, &one], &[&f], vec![]);
        cx.b.node("Mul", name, &[ins[0], &f], &[out], vec![]);
    }

    /// dx = dy * (1 + scale) (the forward's factor); dscale = sum over H, W of dy * x.
    fn lower_backward(&self, cx: &mut Lowerer<'_>, name: &str, at: &GradValues<'_>) -> LoweredGrads {
        let mut grads = LoweredGrads::default();
        if at.wants[0] {
            let factor = format!("{name}/factor");
            grads.inputs.push((0, emit(cx, "Mul", grad_step(name, "x"), &[at.dy, &factor], vec![])));
        }
        if at.wants[1] {
            let prod = emit(cx, "Mul", grad_step(name, "dy_x"), &[at.dy, at.ins[0]], vec![]);
            grads.inputs.push((1, reduce_sum(cx, grad_step(name, "scale"), &prod, &[2, 3], false)));
        }
        grads
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scale_has_one_value_per_channel() {
        let x = Shape::image(4, 3, 3);
        assert_eq!(ScaleChannels.infer_shape(&[&x, &Shape::vector(4)]), Ok(x.clone()));
        assert_eq!(
            ScaleChannels.infer_shape(&[&x, &Shape::vector(3)]),
            Err(ShapeError::ChannelMismatch { input: 1, expected: 4, found: 3 })
        );
    }
}
