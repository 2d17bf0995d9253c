//! A learnt vector per class: out[n] = weight[y[n]], [] -> [features]. Params: weight
//! [rows, features], rows = classes + 1 (the last row is the null label's), drawn N(0, 1) as
//! PyTorch's `nn.Embedding`. Added to the time embedding (DiT), it conditions the resblocks that
//! read the sum as their `time`.

use super::{arity, Init, ParamSpec, PrimitiveOp, Rank, ShapeError};
use super::{Backward, Forward};
use crate::base::Shape;
use crate::kernels::class_embedding;
use crate::kernels::Real;
use crate::onnx_ir::builder::{attribute, Attr};
use crate::onnx_ir::lower::Lowerer;
use super::lower_grad::{emit, grad_step};
use super::{GradValues, LoweredGrads};

#[derive(Debug, Clone, PartialEq)]
pub struct Embedding {
    /// Rows of the table: the classes and the null label.
    pub rows: usize,
    pub features: usize,
}

impl PrimitiveOp for Embedding {
    fn kind(&self) -> &'static str {
        "embedding"
    }

    fn params(&self) -> Vec<ParamSpec> {
        vec![ParamSpec { name: "weight", shape: vec![self.rows, self.features], init: Init::Normal { std: 1.0 } }]
    }

    fn infer_shape(&self, inputs: &[&Shape]) -> Result<Shape, ShapeError> {
        arity(inputs, 1)?;
        if !inputs[0].is_scalar() {
            return Err(ShapeError::WrongRank { input: 0, expected: Rank::Label, found: inputs[0].clone() });
        }
        Ok(Shape::vector(self.features))
    }

    /// A copy, no arithmetic.
    fn flops(&self, _: &[&Shape], _: &Shape) -> u128 {
        0
    }

    /// The weight gradient scatters dy into the rows the labels picked.
    fn backward_keeps_inputs(&self) -> bool {
        true
    }

    fn forward<T: Real>(&self, cx: Forward<'_, T>) {
        class_embedding::forward(self.rows, self.features, cx.inputs[0], cx.params[0], cx.out);
    }

    fn backward<T: Real>(&self, cx: Backward<'_, '_, T>, dy: Vec<T>) {
        let dw = match cx.param_grads {
            [dw] => &mut **dw,
            _ => unreachable!("an embedding has one parameter"),
        };
        class_embedding::backward(self.rows, self.features, cx.inputs[0], &dy, dw);
        cx.pool.give(dy);
    }

    /// The rows include the null label's, the last.
    fn torch_layer(&self) -> Option<String> {
        Some(format!("nn.Embedding({}, {})", self.rows, self.features))
    }

    fn torch_forward(&self, name: &str, ins: &[&str]) -> String {
        format!("self.{name}({})", ins[0])
    }

    fn torch_helper(&self) -> &'static str {
        ""
    }

    /// `Gather(weight, y)` along the rows; `y` is the int64 label input.
    fn lower_onnx(&self, cx: &mut Lowerer<'_>, name: &str, ins: &[&str], out: &str) {
        let w = cx.weight(name, "weight", &[self.rows, self.features]);
        let axis = vec![attribute("axis", Attr::Int(0))];
        cx.b.node("Gather", name, &[&w, ins[0]], &[out], axis);
    }

    /// dW = onehot(labels)^T dy: a `OneHot` and a `Gemm`, deterministic (unlike a scatter-add).
    fn lower_backward(&self, cx: &mut Lowerer<'_>, name: &str, at: &GradValues<'_>) -> LoweredGrads {
        let depth = cx.b.const_i64(&[self.rows as i64]);
        let values = cx.b.const_f32("off_on", &[2], &[0.0, 1.0]);
        let onehot = emit(cx, "OneHot", grad_step(name, "onehot"), &[at.ins[0], &depth, &values], vec![]);
        let trans_a = vec![attribute("transA", Attr::Int(1))];
        let dw = emit(cx, "Gemm", grad_step(name, "weight"), &[&onehot, at.dy], trans_a);
        LoweredGrads { inputs: vec![], params: vec![dw] }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_a_label_to_a_vector_and_refuses_other_ranks() {
        let op = Embedding { rows: 11, features: 8 };
        assert_eq!(op.infer_shape(&[&Shape::scalar()]), Ok(Shape::vector(8)));
        let wrong = op.infer_shape(&[&Shape::vector(3)]);
        assert!(matches!(wrong, Err(ShapeError::WrongRank { input: 0, expected: Rank::Label, .. })));
        assert_eq!(op.params()[0].numel(), 88);
    }
}
