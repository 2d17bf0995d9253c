//! x * sigmoid(x), elementwise, any shape.

use super::{arity, ParamSpec, PrimitiveOp, ShapeError};
use super::{Backward, Forward};
use crate::base::Shape;
use crate::kernels::activation;
use crate::kernels::Real;
use crate::onnx_ir::lower::Lowerer;
use super::lower_grad::{emit, grad_step};
use super::{GradValues, LoweredGrads};

#[derive(Debug, Clone, PartialEq)]
pub struct Silu;

impl PrimitiveOp for Silu {
    fn kind(&self) -> &'static str {
        "silu"
    }

    fn params(&self) -> Vec<ParamSpec> {
        vec![]
    }

    fn infer_shape(&self, inputs: &[&Shape]) -> Result<Shape, ShapeError> {
        arity(inputs, 1)?;
        Ok(inputs[0].clone())
    }

    fn flops(&self, _: &[&Shape], output: &Shape) -> u128 {
        4 * output.numel() as u128
    }

    /// d silu(x) / dx needs x.
    fn backward_keeps_inputs(&self) -> bool {
        true
    }

    fn forward<T: Real>(&self, cx: Forward<'_, T>) {
        activation::silu_forward(cx.inputs[0], cx.out);
    }

    fn backward<T: Real>(&self, cx: Backward<'_, '_, T>, mut dy: Vec<T>) {
        activation::silu_backward_in_place(cx.inputs[0], &mut dy);
        cx.input_grads.push((0, dy));
    }

    fn torch_layer(&self) -> Option<String> {
        None
    }

    fn torch_forward(&self, _name: &str, ins: &[&str]) -> String {
        format!("F.silu({})", ins[0])
    }

    fn torch_helper(&self) -> &'static str {
        ""
    }

    /// As x * Sigmoid(x), which onnxruntime fuses.
    fn lower_onnx(&self, cx: &mut Lowerer<'_>, name: &str, ins: &[&str], out: &str) {
        let sig = format!("{name}/sigmoid");
        cx.b.node("Sigmoid", &sig, &[ins[0]], &[&sig], vec![]);
        cx.b.node("Mul", name, &[ins[0], &sig], &[out], vec![]);
    }

    /// dx = dy * (s + y (1 - s)) with s the forward's sigmoid and y = x s its output.
    fn lower_backward(&self, cx: &mut Lowerer<'_>, name: &str, at: &GradValues<'_>) -> LoweredGrads {
        let sig = format!("{name}/sigmoid");
        let one = cx.b.const_f32("one", &[], &[1.0]);
        let rest = emit(cx, "Sub", grad_step(name, "one_minus_s"), &[&one, &sig], vec![]);
        let ys = emit(cx, "Mul", grad_step(name, "y_rest"), &[at.out, &rest], vec![]);
        let slope = emit(cx, "Add", grad_step(name, "slope"), &[&sig, &ys], vec![]);
        let dx = emit(cx, "Mul", grad_step(name, "x"), &[at.dy, &slope], vec![]);
        LoweredGrads { inputs: vec![(0, dx)], params: vec![] }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_shape() {
        let v = Shape::vector(7);
        assert_eq!(Silu.infer_shape(&[&v]), Ok(v.clone()));
        assert_eq!(Silu.infer_shape(&[&v, &v]), Err(ShapeError::Arity { expected: 1, found: 2 }));
    }
}
