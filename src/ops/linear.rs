//! y = x W^T + b: [in] -> [out]. Params: weight [out, in], bias [out]. The products run at the
//! workers' precision (`Workers::precision`, set by `Executor::with_precision`).

use super::exec::weight_and_bias;
use super::{arity, vector, Init, ParamSpec, PrimitiveOp, ShapeError};
use super::{Backward, Forward};
use crate::base::Shape;
use crate::kernels::linear;
use crate::kernels::Real;
use crate::onnx_ir::builder::{attribute, Attr};
use crate::onnx_ir::lower::Lowerer;
use super::lower_grad::{emit, grad_step, reduce_sum};
use super::{GradValues, LoweredGrads};

#[derive(Debug, Clone, PartialEq)]
pub struct Linear {
    pub in_features: usize,
    pub out_features: usize,
}

impl PrimitiveOp for Linear {
    fn kind(&self) -> &'static str {
        "linear"
    }

    fn params(&self) -> Vec<ParamSpec> {
        let (fan_in, out) = (self.in_features, self.out_features);
        vec![
            ParamSpec { name: "weight", shape: vec![out, fan_in], init: Init::KaimingUniform { fan_in } },
            ParamSpec { name: "bias", shape: vec![out], init: Init::BiasUniform { fan_in } },
        ]
    }

    fn infer_shape(&self, inputs: &[&Shape]) -> Result<Shape, ShapeError> {
        arity(inputs, 1)?;
        let d = vector(inputs, 0)?;
        if d != self.in_features {
            return Err(ShapeError::ChannelMismatch { input: 0, expected: self.in_features, found: d });
        }
        Ok(Shape::vector(self.out_features))
    }

    fn flops(&self, _: &[&Shape], output: &Shape) -> u128 {
        2 * self.in_features as u128 * output.numel() as u128
    }

    /// dW = dy^T x needs x.
    fn backward_keeps_inputs(&self) -> bool {
        true
    }

    fn forward<T: Real>(&self, cx: Forward<'_, T>) {
        let (i, o) = (self.in_features, self.out_features);
        let (x, w, b) = (cx.inputs[0], cx.params[0], cx.params[1]);
        linear::forward(cx.workers, cx.batch, i, o, x, w, b, cx.out);
    }

    fn backward<T: Real>(&self, cx: Backward<'_, '_, T>, dy: Vec<T>) {
        let (i, o, n) = (self.in_features, self.out_features, cx.batch);
        let mut dx = cx.wants[0].then(|| cx.pool.take(n * i));
        let (dw, db) = weight_and_bias(cx.param_grads);
        let (x, w) = (cx.inputs[0], cx.params[0]);
        linear::backward(cx.workers, n, i, o, x, w, &dy, dx.as_deref_mut(), dw, db);
        cx.pool.give(dy);
        cx.input_grads.extend(dx.map(|dx| (0, dx)));
    }

    fn torch_layer(&self) -> Option<String> {
        Some(format!("nn.Linear({}, {})", self.in_features, self.out_features))
    }

    fn torch_forward(&self, name: &str, ins: &[&str]) -> String {
        format!("self.{name}({})", ins[0])
    }

    fn torch_helper(&self) -> &'static str {
        ""
    }

    fn lower_onnx(&self, cx: &mut Lowerer<'_>, name: &str, ins: &[&str], out: &str) {
        let w = cx.weight(name, "weight", &[self.out_features, self.in_features]);
        let bias = cx.weight(name, "bias", &[self.out_features]);
        let trans_b = vec![attribute("transB", Attr::Int(1))];
        cx.b.node("Gemm", name, &[ins[0], &w, &bias], &[out], trans_b);
    }

    /// dx = dy W, dW = dy^T x, db = sum over the batch.
    fn lower_backward(&self, cx: &mut Lowerer<'_>, name: &str, at: &GradValues<'_>) -> LoweredGrads {
        let w = cx.weight(name, "weight", &[self.out_features, self.in_features]);
        let mut grads = LoweredGrads::default();
        if at.wants[0] {
            grads.inputs.push((0, emit(cx, "Gemm", grad_step(name, "x"), &[at.dy, &w], vec![])));
        }
        let trans_a = vec![attribute("transA", Attr::Int(1))];
        let dw = emit(cx, "Gemm", grad_step(name, "weight"), &[at.dy, at.ins[0]], trans_a);
        let db = reduce_sum(cx, grad_step(name, "bias"), at.dy, &[0], false);
        grads.params = vec![dw, db];
        grads
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::Rank;

    #[test]
    fn maps_features_and_names_the_input_at_fault() {
        let op = Linear { in_features: 4, out_features: 6 };
        assert_eq!(op.infer_shape(&[&Shape::vector(4)]), Ok(Shape::vector(6)));
        assert_eq!(
            op.infer_shape(&[&Shape::vector(5)]),
            Err(ShapeError::ChannelMismatch { input: 0, expected: 4, found: 5 })
        );
        let img = Shape::image(4, 2, 2);
        assert!(matches!(op.infer_shape(&[&img]), Err(ShapeError::WrongRank { expected: Rank::Vector, .. })));
        assert_eq!(op.params().iter().map(ParamSpec::numel).sum::<usize>(), 4 * 6 + 6);
        assert_eq!(op.flops(&[&Shape::vector(4)], &Shape::vector(6)), 48);
    }
}
