//! Elementwise sum of two inputs of the same shape.

use super::{arity, ParamSpec, PrimitiveOp, ShapeError};
use super::{Backward, Forward};
use crate::base::Shape;
use crate::kernels::elementwise;
use crate::kernels::Real;
use crate::onnx_ir::lower::Lowerer;
use super::{GradValues, LoweredGrads};

#[derive(Debug, Clone, PartialEq)]
pub struct Add;

impl PrimitiveOp for Add {
    fn kind(&self) -> &'static str {
        "add"
    }

    fn params(&self) -> Vec<ParamSpec> {
        vec![]
    }

    fn infer_shape(&self, inputs: &[&Shape]) -> Result<Shape, ShapeError> {
        arity(inputs, 2)?;
        if inputs[0] != inputs[1] {
            let found = (inputs[0].clone(), inputs[1].clone());
            return Err(ShapeError::ShapeMismatch { inputs: (0, 1), found });
        }
        Ok(inputs[0].clone())
    }

    fn flops(&self, _: &[&Shape], output: &Shape) -> u128 {
        output.numel() as u128
    }

    fn backward_keeps_inputs(&self) -> bool {
        false
    }

    fn forward<T: Real>(&self, cx: Forward<'_, T>) {
        elementwise::add(cx.inputs[0], cx.inputs[1], cx.out);
    }

    /// Both inputs receive dy.
    fn backward<T: Real>(&self, cx: Backward<'_, '_, T>, dy: Vec<T>) {
        let mut copy = cx.pool.take(dy.len());
        elementwise::copy(&dy, &mut copy);
        cx.input_grads.push((0, copy));
        cx.input_grads.push((1, dy));
    }

    fn torch_layer(&self) -> Option<String> {
        None
    }

    fn torch_forward(&self, _name: &str, ins: &[&str]) -> String {
        format!("{} + {}", ins[0], ins[1])
    }

    fn torch_helper(&self) -> &'static str {
        ""
    }

    fn lower_onnx(&self, cx: &mut Lowerer<'_>, name: &str, ins: &[&str], out: &str) {
        cx.b.node("Add", name, &[ins[0], ins[1]], &[out], vec![]);
    }

    /// Both inputs receive dy itself.
    fn lower_backward(&self, _: &mut Lowerer<'_>, _: &str, at: &GradValues<'_>) -> LoweredGrads {
        let inputs = (0..2).filter(|&k| at.wants[k]).map(|k| (k, at.dy.to_string())).collect();
        LoweredGrads { inputs, params: vec![] }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_equal_shapes() {
        let (a, b) = (Shape::image(4, 8, 8), Shape::image(4, 8, 7));
        assert_eq!(Add.infer_shape(&[&a, &a]), Ok(a.clone()));
        assert_eq!(
            Add.infer_shape(&[&a, &b]),
            Err(ShapeError::ShapeMismatch { inputs: (0, 1), found: (a.clone(), b.clone()) })
        );
    }
}
