//! Concatenation along channels of two or more [Ci, H, W] inputs with equal H, W.

use super::{image, ParamSpec, PrimitiveOp, ShapeError};
use super::{Backward, Forward};
use crate::base::Shape;
use crate::kernels::elementwise;
use crate::kernels::Real;
use crate::onnx_ir::builder::{attribute, Attr};
use crate::onnx_ir::lower::Lowerer;
use super::lower_grad::grad_step;
use super::{GradValues, LoweredGrads};

#[derive(Debug, Clone, PartialEq)]
pub struct Concat;

impl PrimitiveOp for Concat {
    fn kind(&self) -> &'static str {
        "concat"
    }

    fn params(&self) -> Vec<ParamSpec> {
        vec![]
    }

    fn infer_shape(&self, inputs: &[&Shape]) -> Result<Shape, ShapeError> {
        if inputs.len() < 2 {
            return Err(ShapeError::Arity { expected: 2, found: inputs.len() });
        }
        let (mut total, h, w) = image(inputs, 0)?;
        for k in 1..inputs.len() {
            let (c, hk, wk) = image(inputs, k)?;
            if (hk, wk) != (h, w) {
                let found = (inputs[0].clone(), inputs[k].clone());
                return Err(ShapeError::SpatialMismatch { inputs: (0, k), found });
            }
            total += c;
        }
        Ok(Shape::image(total, h, w))
    }

    fn flops(&self, _: &[&Shape], _: &Shape) -> u128 {
        0
    }

    fn backward_keeps_inputs(&self) -> bool {
        false
    }

    fn forward<T: Real>(&self, cx: Forward<'_, T>) {
        let sizes: Vec<usize> = cx.input_shapes.iter().map(|s| s.numel()).collect();
        elementwise::concat(cx.inputs, &sizes, cx.out);
    }

    /// Each input receives its own channels of dy.
    fn backward<T: Real>(&self, cx: Backward<'_, '_, T>, dy: Vec<T>) {
        let total = cx.shape.numel();
        let mut offset = 0;
        for (k, s) in cx.input_shapes.iter().enumerate() {
            let len = s.numel();
            if cx.wants[k] {
                let mut dx = cx.pool.take(cx.batch * len);
                elementwise::concat_backward(total, offset, len, &dy, &mut dx);
                cx.input_grads.push((k, dx));
            }
            offset += len;
        }
        cx.pool.give(dy);
    }

    fn torch_layer(&self) -> Option<String> {
        None
    }

    fn torch_forward(&self, _name: &str, ins: &[&str]) -> String {
        format!("torch.cat([{}], dim=1)", ins.join(", "))
    }

    fn torch_helper(&self) -> &'static str {
        ""
    }

    fn lower_onnx(&self, cx: &mut Lowerer<'_>, name: &str, ins: &[&str], out: &str) {
        cx.b.node("Concat", name, ins, &[out], vec![attribute("axis", Attr::Int(1))]);
    }

    /// dy split back on channels.
    fn lower_backward(&self, cx: &mut Lowerer<'_>, name: &str, at: &GradValues<'_>) -> LoweredGrads {
        let sizes: Vec<i64> = at.input_shapes.iter().map(|s| s.channels().unwrap_or(0) as i64).collect();
        let split = cx.b.const_i64(&sizes);
        let outs: Vec<String> = (0..sizes.len()).map(|k| grad_step(name, &format!("in{k}"))).collect();
        let out_refs: Vec<&str> = outs.iter().map(String::as_str).collect();
        let axis = vec![attribute("axis", Attr::Int(1))];
        cx.b.node("Split", &grad_step(name, "split"), &[at.dy, &split], &out_refs, axis);
        let inputs = outs.into_iter().enumerate().filter(|(k, _)| at.wants[*k]).collect();
        LoweredGrads { inputs, params: vec![] }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_channels_and_names_the_input_of_another_size() {
        let (a, b, c) = (Shape::image(2, 4, 4), Shape::image(3, 4, 4), Shape::image(1, 8, 8));
        assert_eq!(Concat.infer_shape(&[&a, &b]), Ok(Shape::image(5, 4, 4)));
        assert_eq!(
            Concat.infer_shape(&[&a, &b, &c]),
            Err(ShapeError::SpatialMismatch { inputs: (0, 2), found: (a.clone(), c.clone()) })
        );
        assert_eq!(Concat.infer_shape(&[&a]), Err(ShapeError::Arity { expected: 2, found: 1 }));
    }
}
