//! GroupNorm over (C/groups, H, W) per group, affine: [C, H, W] -> [C, H, W].
//! Params: weight [C] (init 1), bias [C] (init 0).

use super::exec::{weight_and_bias, Epilogue};
use super::{arity, image, Init, Param, ParamSpec, PrimitiveOp, ShapeError};
use super::{Backward, Forward};
use crate::base::Shape;
use crate::kernels::norm;
use crate::kernels::Real;
use crate::onnx_ir::builder::{attribute, Attr};
use crate::onnx_ir::lower::Lowerer;
use super::lower_grad::{channel_sum, emit, grad_step, reduce_mean, reduce_sum, reshape};
use super::{GradValues, LoweredGrads};

#[derive(Debug, Clone, PartialEq)]
pub struct GroupNorm {
    pub groups: usize,
    pub channels: usize,
    pub eps: f32,
}

impl GroupNorm {
    fn geom(&self, shape: &Shape) -> norm::GroupNormGeom {
        let (channels, groups) = (self.channels, self.groups);
        norm::GroupNormGeom { channels, hw: shape.numel() / channels, groups, eps: self.eps as f64 }
    }
}

impl PrimitiveOp for GroupNorm {
    fn kind(&self) -> &'static str {
        "group_norm"
    }

    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec { name: "weight", shape: vec![self.channels], init: Init::Constant(1.0) },
            ParamSpec { name: "bias", shape: vec![self.channels], init: Init::Constant(0.0) },
        ]
    }

    fn infer_shape(&self, inputs: &[&Shape]) -> Result<Shape, ShapeError> {
        arity(inputs, 1)?;
        let (c, _, _) = image(inputs, 0)?;
        if c != self.channels {
            return Err(ShapeError::ChannelMismatch { input: 0, expected: self.channels, found: c });
        }
        if self.groups == 0 || !self.channels.is_multiple_of(self.groups) {
            return Err(ShapeError::NotDivisible {
                param: Param::Groups,
                value: self.groups,
                channels: self.channels,
            });
        }
        Ok(inputs[0].clone())
    }

    fn flops(&self, _: &[&Shape], output: &Shape) -> u128 {
        // mean, variance, normalise, affine
        8 * output.numel() as u128
    }

    /// The input gradient needs x (with the saved mean and 1/std).
    fn backward_keeps_inputs(&self) -> bool {
        true
    }

    /// Also applies a fused SiLU and time bias; in training saves each group's mean and 1/std.
    fn forward<T: Real>(&self, cx: Forward<'_, T>) {
        let geom = self.geom(cx.shape);
        let mut stats = cx.pool.take(cx.batch * self.groups * 2);
        let (x, gamma, beta) = (cx.inputs[0], cx.params[0], cx.params[1]);
        let silu = cx.epilogue != Epilogue::None;
        let time_bias = (cx.epilogue == Epilogue::SiluThenChannelBias).then(|| cx.inputs[1]);
        let (n, y) = (cx.batch, cx.out);
        norm::forward(&geom, n, x, gamma, beta, y, &mut stats, silu, time_bias);
        match cx.saved {
            Some(slot) => *slot = Some(stats),
            None => cx.pool.give(stats),
        }
    }

    fn backward<T: Real>(&self, cx: Backward<'_, '_, T>, dy: Vec<T>) {
        let geom = self.geom(cx.shape);
        let mut dx = cx.pool.take(dy.len());
        let (dw, db) = weight_and_bias(cx.param_grads);
        let stats = cx.saved.expect("the training forward saved the group statistics");
        let (x, gamma, beta) = (cx.inputs[0], cx.params[0], cx.params[1]);
        let silu = cx.epilogue != Epilogue::None;
        let mut time_bias_grad = match cx.epilogue {
            Epilogue::SiluThenChannelBias => Some(cx.pool.take(cx.batch * self.channels)),
            _ => None,
        };
        let (n, tbg) = (cx.batch, time_bias_grad.as_deref_mut());
        norm::backward(cx.workers, &geom, n, x, gamma, beta, stats, &dy, &mut dx, dw, db, silu, tbg);
        cx.pool.give(dy);
        cx.input_grads.push((0, dx));
        if let Some(d) = time_bias_grad {
            cx.input_grads.push((1, d));
        }
    }

    fn torch_layer(&self) -> Option<String> {
        Some(format!("nn.GroupNorm({}, {}, eps={:e})", self.groups, self.channels, self.eps))
    }

    fn torch_forward(&self, name: &str, ins: &[&str]) -> String {
        format!("self.{name}({})", ins[0])
    }

    fn torch_helper(&self) -> &'static str {
        ""
    }

    /// As Reshape -> InstanceNormalization -> Reshape -> Mul -> Add: about 2x faster in
    /// onnxruntime's CPU provider than GroupNormalization.
    fn lower_onnx(&self, cx: &mut Lowerer<'_>, name: &str, ins: &[&str], out: &str) {
        let (groups, channels) = (self.groups, self.channels);
        let step = |s: &str| format!("{name}/{s}");
        let eps_attr = || vec![attribute("epsilon", Attr::Float(self.eps))];
        if groups == channels {
            // One channel per group is exactly instance norm, affine included.
            let w = cx.weight(name, "weight", &[channels]);
            let bias = cx.weight(name, "bias", &[channels]);
            cx.b.node("InstanceNormalization", name, &[ins[0], &w, &bias], &[out], eps_attr());
            return;
        }
        // Normalise each group as one instance-norm "channel", then the per-channel affine.
        let grouped = cx.b.const_i64(&[0, groups as i64, -1]);
        let ones = cx.b.const_f32(&format!("ones{groups}"), &[groups], &vec![1.0; groups]);
        let zeros = cx.b.const_f32(&format!("zeros{groups}"), &[groups], &vec![0.0; groups]);
        let shape = cx.shape_of(ins[0]);
        let w = cx.weight(name, "weight", &[channels, 1, 1]);
        let bias = cx.weight(name, "bias", &[channels, 1, 1]);
        let (r, n, back, scaled) = (step("group"), step("normalize"), step("ungroup"), step("scale"));
        cx.b.node("Reshape", &r, &[ins[0], &grouped], &[&r], vec![]);
        cx.b.node("InstanceNormalization", &n, &[&r, &ones, &zeros], &[&n], eps_attr());
        cx.b.node("Reshape", &back, &[&n, &shape], &[&back], vec![]);
        cx.b.node("Mul", &scaled, &[&back, &w], &[&scaled], vec![]);
        cx.b.node("Add", name, &[&scaled, &bias], &[out], vec![]);
    }

    /// By reductions over each group: with xhat = (x - mean) / std recomputed from x,
    /// dgamma = sum dy xhat, dbeta = sum dy, and dx = (g - mean(g) - xhat mean(g xhat)) / std
    /// for g = dy gamma.
    fn lower_backward(&self, cx: &mut Lowerer<'_>, name: &str, at: &GradValues<'_>) -> LoweredGrads {
        let (groups, channels) = (self.groups as i64, self.channels);
        let s = |step: &str| grad_step(name, step);
        let x = at.ins[0];
        let shape = cx.shape_of(x);
        let xg = reshape(cx, s("x_grouped"), x, &[0, groups, -1]);
        let mean = reduce_mean(cx, s("mean"), &xg, &[2]);
        let centred = emit(cx, "Sub", s("centred"), &[&xg, &mean], vec![]);
        let sq = emit(cx, "Mul", s("centred_sq"), &[&centred, &centred], vec![]);
        let var = reduce_mean(cx, s("var"), &sq, &[2]);
        let eps = cx.b.const_f32(&format!("eps{}", self.eps), &[], &[self.eps]);
        let var_eps = emit(cx, "Add", s("var_eps"), &[&var, &eps], vec![]);
        let std = emit(cx, "Sqrt", s("std"), &[&var_eps], vec![]);
        let rstd = emit(cx, "Reciprocal", s("rstd"), &[&std], vec![]);
        let xhat_g = emit(cx, "Mul", s("xhat_grouped"), &[&centred, &rstd], vec![]);
        let xhat = emit(cx, "Reshape", s("xhat"), &[&xhat_g, &shape], vec![]);
        let dy_xhat = emit(cx, "Mul", s("dy_xhat"), &[at.dy, &xhat], vec![]);
        let dgamma = reduce_sum(cx, s("weight"), &dy_xhat, &[0, 2, 3], false);
        let dbeta = channel_sum(cx, name, at.dy);
        let gamma = cx.weight(name, "weight", &[channels, 1, 1]);
        let g = emit(cx, "Mul", s("dxhat"), &[at.dy, &gamma], vec![]);
        let gg = reshape(cx, s("dxhat_grouped"), &g, &[0, groups, -1]);
        let mean_g = reduce_mean(cx, s("mean_dxhat"), &gg, &[2]);
        let g_xhat = emit(cx, "Mul", s("dxhat_xhat"), &[&gg, &xhat_g], vec![]);
        let mean_g_xhat = reduce_mean(cx, s("mean_dxhat_xhat"), &g_xhat, &[2]);
        let proj = emit(cx, "Mul", s("projection"), &[&xhat_g, &mean_g_xhat], vec![]);
        let less_mean = emit(cx, "Sub", s("less_mean"), &[&gg, &mean_g], vec![]);
        let less_proj = emit(cx, "Sub", s("less_projection"), &[&less_mean, &proj], vec![]);
        let dx_g = emit(cx, "Mul", s("x_grouped_grad"), &[&less_proj, &rstd], vec![]);
        let dx = emit(cx, "Reshape", s("x"), &[&dx_g, &shape], vec![]);
        LoweredGrads { inputs: vec![(0, dx)], params: vec![dgamma, dbeta] }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_must_divide_the_channels() {
        let x = Shape::image(18, 4, 4);
        let ok = GroupNorm { groups: 6, channels: 18, eps: 1e-5 };
        assert_eq!(ok.infer_shape(&[&x]), Ok(x.clone()));
        let bad = GroupNorm { groups: 4, channels: 18, eps: 1e-5 };
        let e = bad.infer_shape(&[&x]).unwrap_err();
        assert_eq!(e, ShapeError::NotDivisible { param: Param::Groups, value: 4, channels: 18 });
        assert_eq!(e.to_string(), "18 channels are not divisible into 4 groups");
    }
}
