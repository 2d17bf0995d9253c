//! Sinusoidal embedding of `t`: [] -> [dim].
//! half = dim / 2, freq_i = exp(-ln(10000) * i / half) for i in 0..half,
//! out = [sin(t * freq_0..half), cos(t * freq_0..half)]  (the diffusers convention, shift 0).

use super::{arity, Param, ParamSpec, PrimitiveOp, Rank, ShapeError};
use super::{Backward, Forward};
use crate::base::Shape;
use crate::kernels::embedding;
use crate::kernels::Real;
use crate::onnx_ir::builder::{attribute, Attr};
use crate::onnx_ir::lower::Lowerer;
use super::{GradValues, LoweredGrads};

/// The Python function [`TimestepEmbedding::torch_forward`] calls: the arguments in float64 as
/// the interpreter computes them (t * freq reaches ~1000 rad, where float32 would move sin/cos).
const TORCH_HELPER: &str = r#"def timestep_embedding(t, dim):
    """Sinusoidal embedding of the timesteps t [N] -> [N, dim]: sin(t * f_i), then cos(t * f_i),
    f_i = exp(-ln(10000) * i / half) for i < half = dim / 2, computed in float64."""
    half = dim // 2
    i = torch.arange(half, dtype=torch.float64, device=t.device)
    freqs = torch.exp(-math.log(10000.0) * i / half)
    args = t.to(torch.float64)[:, None] * freqs[None, :]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1).to(torch.float32)
"#;

#[derive(Debug, Clone, PartialEq)]
pub struct TimestepEmbedding {
    pub dim: usize,
}

impl PrimitiveOp for TimestepEmbedding {
    fn kind(&self) -> &'static str {
        "timestep_embedding"
    }

    fn params(&self) -> Vec<ParamSpec> {
        vec![]
    }

    fn infer_shape(&self, inputs: &[&Shape]) -> Result<Shape, ShapeError> {
        arity(inputs, 1)?;
        if !inputs[0].is_scalar() {
            return Err(ShapeError::WrongRank { input: 0, expected: Rank::Scalar, found: inputs[0].clone() });
        }
        if self.dim < 2 || !self.dim.is_multiple_of(2) {
            return Err(ShapeError::OutOfRange {
                param: Param::Dim,
                value: self.dim,
                expected: "an even number of at least 2 (half sines, half cosines)",
            });
        }
        Ok(Shape::vector(self.dim))
    }

    fn flops(&self, _: &[&Shape], _: &Shape) -> u128 {
        3 * self.dim as u128
    }

    fn backward_keeps_inputs(&self) -> bool {
        false
    }

    fn forward<T: Real>(&self, cx: Forward<'_, T>) {
        embedding::forward(self.dim, cx.inputs[0], cx.out);
    }

    /// Its only input is the timestep, which takes no gradient.
    fn backward<T: Real>(&self, cx: Backward<'_, '_, T>, dy: Vec<T>) {
        cx.pool.give(dy);
    }

    fn torch_layer(&self) -> Option<String> {
        None
    }

    fn torch_forward(&self, _name: &str, ins: &[&str]) -> String {
        format!("timestep_embedding({}, {})", ins[0], self.dim)
    }

    /// The arguments in float64, as the interpreter and the ONNX export compute them.
    fn torch_helper(&self) -> &'static str {
        TORCH_HELPER
    }

    fn lower_onnx(&self, cx: &mut Lowerer<'_>, name: &str, ins: &[&str], out: &str) {
        let step = |s: &str| format!("{name}/{s}");
        // Arguments in f64: t * freq reaches ~1000 rad, where f32 rounding would already
        // move sin/cos by ~1e-4.
        let half = self.dim / 2;
        let freqs: Vec<f64> = (0..half).map(|i| (-(10000f64.ln()) * i as f64 / half as f64).exp()).collect();
        let freqs = cx.b.const_f64(&format!("timestep_freqs{half}"), &[1, half], &freqs);
        let axes = cx.b.const_i64(&[1]);
        let (t64, t2, arg, sin, cos, cat) =
            (step("cast"), step("unsqueeze"), step("arg"), step("sin"), step("cos"), step("concat"));
        cx.b.node("Cast", &t64, &[ins[0]], &[&t64], vec![attribute("to", Attr::Int(11))]);
        cx.b.node("Unsqueeze", &t2, &[&t64, &axes], &[&t2], vec![]);
        cx.b.node("Mul", &arg, &[&t2, &freqs], &[&arg], vec![]);
        cx.b.node("Sin", &sin, &[&arg], &[&sin], vec![]);
        cx.b.node("Cos", &cos, &[&arg], &[&cos], vec![]);
        cx.b.node("Concat", &cat, &[&sin, &cos], &[&cat], vec![attribute("axis", Attr::Int(1))]);
        cx.b.node("Cast", name, &[&cat], &[out], vec![attribute("to", Attr::Int(1))]);
    }

    /// Its input is the timestep, which takes no gradient; it has no parameters.
    fn lower_backward(&self, _: &mut Lowerer<'_>, _: &str, _: &GradValues<'_>) -> LoweredGrads {
        LoweredGrads::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_an_even_dimension_and_a_scalar() {
        let t = Shape::scalar();
        assert_eq!(TimestepEmbedding { dim: 32 }.infer_shape(&[&t]), Ok(Shape::vector(32)));
        let odd = TimestepEmbedding { dim: 33 }.infer_shape(&[&t]);
        assert!(matches!(odd, Err(ShapeError::OutOfRange { param: Param::Dim, value: 33, .. })));
        let v = Shape::vector(4);
        let wrong = TimestepEmbedding { dim: 8 }.infer_shape(&[&v]);
        assert!(matches!(wrong, Err(ShapeError::WrongRank { input: 0, expected: Rank::Scalar, .. })));
    }
}
