//! Multi-head self-attention over the H*W positions.
//! Input: q, k, v stacked on channels [3C, H, W] (q = channels 0..C, k = C..2C, v = 2C..3C,
//! head h uses channels h*C/heads..(h+1)*C/heads of each). Output [C, H, W]:
//! softmax(q^T k / sqrt(C/heads)) applied to v, heads concatenated back on channels.

use super::{arity, image, Param, ParamSpec, PrimitiveOp, ShapeError};
use super::{Backward, Forward};
use crate::base::Shape;
use crate::kernels::attention;
use crate::kernels::Real;
use crate::onnx_ir::builder::{attribute, Attr};
use crate::onnx_ir::lower::Lowerer;
use super::lower_grad::{emit, grad_step, reduce_sum, reshape, transpose};
use super::{GradValues, LoweredGrads};

/// The Python function [`Attention::torch_forward`] calls: PyTorch's fused attention, whose
/// default scale is the interpreter's 1 / sqrt(d).
const TORCH_HELPER: &str = r#"def attention(qkv, heads):
    """Multi-head self-attention over the H*W positions. q, k, v are stacked on the channels of
    qkv [N, 3C, H, W]; head h reads channels h*d..(h+1)*d of each (d = C / heads):
    softmax(q^T k / sqrt(d)) applied to v, the heads concatenated back on channels."""
    n, c3, h, w = qkv.shape
    q, k, v = qkv.reshape(n, 3, heads, c3 // (3 * heads), h * w).transpose(-1, -2).unbind(1)
    out = F.scaled_dot_product_attention(q, k, v)
    return out.transpose(-1, -2).reshape(n, c3 // 3, h, w)
"#;

#[derive(Debug, Clone, PartialEq)]
pub struct Attention {
    pub channels: usize,
    pub heads: usize,
}

impl Attention {
    fn geom(&self, shape: &Shape) -> attention::AttentionGeom {
        let (channels, heads) = (self.channels, self.heads);
        attention::AttentionGeom { channels, heads, positions: shape.numel() / channels }
    }
}

impl PrimitiveOp for Attention {
    fn kind(&self) -> &'static str {
        "attention"
    }

    fn params(&self) -> Vec<ParamSpec> {
        vec![]
    }

    fn infer_shape(&self, inputs: &[&Shape]) -> Result<Shape, ShapeError> {
        arity(inputs, 1)?;
        let (c, h, w) = image(inputs, 0)?;
        if c != 3 * self.channels {
            return Err(ShapeError::ChannelMismatch { input: 0, expected: 3 * self.channels, found: c });
        }
        if self.heads == 0 || !self.channels.is_multiple_of(self.heads) {
            return Err(ShapeError::NotDivisible {
                param: Param::Heads,
                value: self.heads,
                channels: self.channels,
            });
        }
        Ok(Shape::image(self.channels, h, w))
    }

    fn flops(&self, inputs: &[&Shape], _: &Shape) -> u128 {
        let positions = inputs[0].as_image().map(|(_, h, w)| (h * w) as u128).unwrap_or(0);
        // q^T k and scores @ v: 2 * 2 * P * P * C over all heads; softmax ~5 per score
        4 * positions * positions * self.channels as u128 + 5 * positions * positions * self.heads as u128
    }

    /// The gradients of q, k and v need all three.
    fn backward_keeps_inputs(&self) -> bool {
        true
    }

    fn forward<T: Real>(&self, cx: Forward<'_, T>) {
        attention::forward(cx.workers, &self.geom(cx.shape), cx.batch, cx.inputs[0], cx.out);
    }

    fn backward<T: Real>(&self, cx: Backward<'_, '_, T>, dy: Vec<T>) {
        let mut dx = cx.pool.take(cx.batch * cx.input_shapes[0].numel());
        attention::backward(cx.workers, &self.geom(cx.shape), cx.batch, cx.inputs[0], &dy, &mut dx);
        cx.pool.give(dy);
        cx.input_grads.push((0, dx));
    }

    fn torch_layer(&self) -> Option<String> {
        None
    }

    fn torch_forward(&self, _name: &str, ins: &[&str]) -> String {
        format!("attention({}, {})", ins[0], self.heads)
    }

    fn torch_helper(&self) -> &'static str {
        TORCH_HELPER
    }

    /// qkv [N, 3C, H, W] -> [N, C, H, W] as MatMul/Softmax (Transpose + MatMul fuse into
    /// FusedMatMul in onnxruntime); H and W are read from the input at run time.
    fn lower_onnx(&self, cx: &mut Lowerer<'_>, name: &str, ins: &[&str], out: &str) {
        let (channels, heads, qkv) = (self.channels, self.heads, ins[0]);
        let step = |s: &str| format!("{name}/{s}");
        let d = channels / heads;
        let (h, d_i) = (heads as i64, d as i64);
        // [N, 3C, H, W] -> [N, 3*heads, d, P]: q heads first, then k heads, then v heads.
        let split_heads = cx.b.const_i64(&[0, 3 * h, d_i, -1]);
        let split = cx.b.const_i64(&[h, h, h]);
        let scale = cx.b.const_f32(&format!("attn_scale{d}"), &[], &[1.0 / (d as f32).sqrt()]);
        let (r, q, k, v) = (step("heads"), step("q"), step("k"), step("v"));
        let (qs, qt, scores, probs, pt, o) =
            (step("q_scaled"), step("q_t"), step("scores"), step("softmax"), step("probs_t"), step("out"));
        cx.b.node("Reshape", &r, &[qkv, &split_heads], &[&r], vec![]);
        cx.b.node(
            "Split",
            &step("split"),
            &[&r, &split],
            &[&q, &k, &v],
            vec![attribute("axis", Attr::Int(1))],
        );
        cx.b.node("Mul", &qs, &[&q, &scale], &[&qs], vec![]);
        // scores[p, j] = sum_c q[c, p] k[c, j]
        let transpose = || vec![attribute("perm", Attr::Ints(&[0, 1, 3, 2]))];
        cx.b.node("Transpose", &qt, &[&qs], &[&qt], transpose());
        cx.b.node("MatMul", &scores, &[&qt, &k], &[&scores], vec![]);
        cx.b.node("Softmax", &probs, &[&scores], &[&probs], vec![attribute("axis", Attr::Int(-1))]);
        // out[c, p] = sum_j v[c, j] probs[p, j]
        cx.b.node("Transpose", &pt, &[&probs], &[&pt], transpose());
        cx.b.node("MatMul", &o, &[&v, &pt], &[&o], vec![]);
        // Back to [N, C, H, W], H and W read from the input at run time.
        let shape = cx.shape_of(qkv);
        let (starts, ends) = (cx.b.const_i64(&[2]), cx.b.const_i64(&[4]));
        let keep_n_c = cx.b.const_i64(&[0, channels as i64]);
        let (hw, target) = (step("hw"), step("out_shape"));
        cx.b.node("Slice", &hw, &[&shape, &starts, &ends], &[&hw], vec![]);
        cx.b.node("Concat", &target, &[&keep_n_c, &hw], &[&target], vec![attribute("axis", Attr::Int(0))]);
        cx.b.node("Reshape", name, &[&o, &target], &[out], vec![]);
    }

    /// Through the forward's values: dv = do P, dP = do^T v, the softmax's
    /// dS = P * (dP - sum(dP * P)), dk = q_scaled dS, dq = scale * k dS^T; stacked back as qkv.
    fn lower_backward(&self, cx: &mut Lowerer<'_>, name: &str, at: &GradValues<'_>) -> LoweredGrads {
        let (heads, d) = (self.heads as i64, (self.channels / self.heads) as i64);
        let fwd = |step: &str| format!("{name}/{step}");
        let s = |step: &str| grad_step(name, step);
        let (probs, q_scaled, k, v) = (fwd("softmax"), fwd("q_scaled"), fwd("k"), fwd("v"));
        let scale = cx.b.const_f32(&format!("attn_scale{d}"), &[], &[1.0 / (d as f32).sqrt()]);
        let swap = [0, 1, 3, 2];
        let d_out = reshape(cx, s("out"), at.dy, &[0, heads, d, -1]);
        let dv = emit(cx, "MatMul", s("v"), &[&d_out, &probs], vec![]);
        let d_out_t = transpose(cx, s("out_t"), &d_out, &swap);
        let dp = emit(cx, "MatMul", s("probs"), &[&d_out_t, &v], vec![]);
        let dp_p = emit(cx, "Mul", s("probs_dot"), &[&dp, &probs], vec![]);
        let row = reduce_sum(cx, s("probs_row"), &dp_p, &[-1], true);
        let centred = emit(cx, "Sub", s("probs_centred"), &[&dp, &row], vec![]);
        let ds = emit(cx, "Mul", s("scores"), &[&probs, &centred], vec![]);
        let dk = emit(cx, "MatMul", s("k"), &[&q_scaled, &ds], vec![]);
        let ds_t = transpose(cx, s("scores_t"), &ds, &swap);
        let dq_scaled = emit(cx, "MatMul", s("q_scaled"), &[&k, &ds_t], vec![]);
        let dq = emit(cx, "Mul", s("q"), &[&dq_scaled, &scale], vec![]);
        let axis = vec![attribute("axis", Attr::Int(1))];
        let stacked = emit(cx, "Concat", s("heads"), &[&dq, &dk, &dv], axis);
        let shape = cx.shape_of(at.ins[0]);
        let dqkv = emit(cx, "Reshape", s("qkv"), &[&stacked, &shape], vec![]);
        LoweredGrads { inputs: vec![(0, dqkv)], params: vec![] }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_stacked_qkv_and_heads_divide_channels() {
        let qkv = Shape::image(12, 3, 3);
        assert_eq!(Attention { channels: 4, heads: 2 }.infer_shape(&[&qkv]), Ok(Shape::image(4, 3, 3)));
        let e = Attention { channels: 4, heads: 3 }.infer_shape(&[&qkv]).unwrap_err();
        assert_eq!(e.to_string(), "3 heads do not divide 4 channels");
        assert_eq!(
            Attention { channels: 5, heads: 1 }.infer_shape(&[&qkv]),
            Err(ShapeError::ChannelMismatch { input: 0, expected: 15, found: 12 })
        );
    }
}
