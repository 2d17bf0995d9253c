//! What an op's backward lowering ([`super::PrimitiveOp::lower_backward`]) works with: the
//! forward's values (the op's own helper values `<node>/<step>` included, which its module
//! knows), the static per-image shapes, the output's gradient, and which inputs want one.
//! Helpers emitted by a backward lowering are named `<node>/grad/<step>`.

use crate::base::Shape;
use crate::onnx_ir::builder::{attribute, Attr};
use crate::onnx_ir::lower::Lowerer;
use crate::onnx_ir::proto::AttributeProto;

/// The values a backward lowering reads.
pub struct GradValues<'a> {
    /// The forward's input values, as given to `lower_onnx`.
    pub ins: &'a [&'a str],
    /// The forward's output value.
    pub out: &'a str,
    /// Per-image shapes of the inputs and the output (the training step's sizes are fixed).
    pub input_shapes: &'a [&'a Shape],
    pub shape: &'a Shape,
    /// The gradient of the output, [N, ...] like the output.
    pub dy: &'a str,
    /// Which inputs need a gradient (the others may be left out).
    pub wants: &'a [bool],
}

/// What a backward lowering produced: the values holding the gradients.
#[derive(Debug, Default)]
pub struct LoweredGrads {
    /// (input index, value) for inputs that want a gradient; an input may appear once at most.
    pub inputs: Vec<(usize, String)>,
    /// One value per parameter, in [`super::PrimitiveOp::params`] order, in the parameter's shape.
    pub params: Vec<String>,
}

/// The name of a backward helper value of node `name`.
pub(crate) fn grad_step(name: &str, step: &str) -> String {
    format!("{name}/grad/{step}")
}

/// Emits one node `op_type` named like its single output `out`; returns `out`.
pub(crate) fn emit(
    cx: &mut Lowerer<'_>,
    op_type: &str,
    out: String,
    ins: &[&str],
    attrs: Vec<AttributeProto>,
) -> String {
    cx.b.node(op_type, &out, ins, &[&out], attrs);
    out
}

/// `ReduceSum` of `x` over `axes`, keeping them (size 1) or not.
pub(crate) fn reduce_sum(cx: &mut Lowerer<'_>, out: String, x: &str, axes: &[i64], keep: bool) -> String {
    let axes = cx.b.const_i64(axes);
    emit(cx, "ReduceSum", out, &[x, &axes], vec![attribute("keepdims", Attr::Int(keep as i64))])
}

/// `ReduceMean` of `x` over `axes` kept (opset 17 takes the axes as an attribute).
pub(crate) fn reduce_mean(cx: &mut Lowerer<'_>, out: String, x: &str, axes: &[i64]) -> String {
    emit(
        cx,
        "ReduceMean",
        out,
        &[x],
        vec![attribute("axes", Attr::Ints(axes)), attribute("keepdims", Attr::Int(1))],
    )
}

/// `Transpose` of `x` with `perm`.
pub(crate) fn transpose(cx: &mut Lowerer<'_>, out: String, x: &str, perm: &[i64]) -> String {
    emit(cx, "Transpose", out, &[x], vec![attribute("perm", Attr::Ints(perm))])
}

/// `Reshape` of `x` to the constant `dims` (0 copies the input's size there, -1 infers one).
pub(crate) fn reshape(cx: &mut Lowerer<'_>, out: String, x: &str, dims: &[i64]) -> String {
    let shape = cx.b.const_i64(dims);
    emit(cx, "Reshape", out, &[x, &shape], vec![])
}

/// The bias gradient of a conv-like op: `dy` [N, C, H, W] summed to [C].
pub(crate) fn channel_sum(cx: &mut Lowerer<'_>, name: &str, dy: &str) -> String {
    reduce_sum(cx, grad_step(name, "bias"), dy, &[0, 2, 3], false)
}
