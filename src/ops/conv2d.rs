//! 2-D convolution, square kernel, zero padding: [Cin, H, W] -> [Cout, H', W'] with
//! H' = (H + 2 * padding - kernel) / stride + 1. Params: weight [Cout, Cin, k, k], bias [Cout].
//! The products run at the workers' precision (`Workers::precision`, set by
//! `Executor::with_precision`).

use super::exec::weight_and_bias;
use super::{arity, image, Init, Param, ParamSpec, PrimitiveOp, ShapeError};
use super::{Backward, Forward};
use crate::base::Shape;
use crate::kernels::conv;
use crate::kernels::Real;
use crate::onnx_ir::builder::{attribute, Attr};
use crate::onnx_ir::lower::Lowerer;
use crate::onnx_ir::proto::AttributeProto;
use super::conv_grad::conv_weight_grad;
use super::lower_grad::{channel_sum, emit, grad_step, transpose};
use super::{GradValues, LoweredGrads};

#[derive(Debug, Clone, PartialEq)]
pub struct Conv2d {
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
}

impl Conv2d {
    /// The kernels' view of this conv on an input of shape `input` giving `output`.
    fn geom(&self, input: &Shape, output: &Shape) -> conv::ConvGeom {
        let (_, h, w) = input.as_image().expect("checked image");
        let (_, ho, wo) = output.as_image().expect("checked image");
        let (cin, cout, k, stride, pad) =
            (self.in_channels, self.out_channels, self.kernel, self.stride, self.padding);
        conv::ConvGeom { cin, cout, k, stride, pad, h, w, ho, wo }
    }

    /// Profiles time pointwise and strided convs apart: their kernels differ.
    pub fn profile_label(&self) -> &'static str {
        match (self.kernel, self.stride) {
            (1, _) => "conv2d 1x1",
            (_, 2) => "conv2d strided",
            (_, _) => "conv2d",
        }
    }
}

impl PrimitiveOp for Conv2d {
    fn kind(&self) -> &'static str {
        "conv2d"
    }

    fn params(&self) -> Vec<ParamSpec> {
        let weight = [self.out_channels, self.in_channels, self.kernel, self.kernel];
        conv_params(weight, self.out_channels, self.in_channels * self.kernel * self.kernel)
    }

    fn infer_shape(&self, inputs: &[&Shape]) -> Result<Shape, ShapeError> {
        let (h, w) = conv_input(inputs, self.in_channels, self.kernel, self.stride)?;
        let out = |n: usize| (n + 2 * self.padding).checked_sub(self.kernel).map(|v| v / self.stride + 1);
        match (out(h), out(w)) {
            (Some(oh), Some(ow)) => Ok(Shape::image(self.out_channels, oh, ow)),
            _ => Err(ShapeError::EmptyOutput {
                kernel: self.kernel,
                padding: self.padding,
                height: h,
                width: w,
            }),
        }
    }

    fn flops(&self, _: &[&Shape], output: &Shape) -> u128 {
        2 * (self.in_channels * self.kernel * self.kernel) as u128 * output.numel() as u128
    }

    /// dW = dy * x (as im2col columns) needs x.
    fn backward_keeps_inputs(&self) -> bool {
        true
    }

    fn forward<T: Real>(&self, cx: Forward<'_, T>) {
        let geom = self.geom(cx.input_shapes[0], cx.shape);
        conv::forward(cx.workers, &geom, cx.batch, cx.inputs[0], cx.params[0], cx.params[1], cx.out);
    }

    fn backward<T: Real>(&self, cx: Backward<'_, '_, T>, dy: Vec<T>) {
        let geom = self.geom(cx.input_shapes[0], cx.shape);
        let mut dx = cx.wants[0].then(|| cx.pool.take(cx.batch * cx.input_shapes[0].numel()));
        let (dw, db) = weight_and_bias(cx.param_grads);
        let (x, w) = (cx.inputs[0], cx.params[0]);
        conv::backward(cx.workers, &geom, cx.batch, x, w, &dy, dx.as_deref_mut(), dw, db);
        cx.pool.give(dy);
        cx.input_grads.extend(dx.map(|dx| (0, dx)));
    }

    fn torch_layer(&self) -> Option<String> {
        let (cin, cout, k) = (self.in_channels, self.out_channels, self.kernel);
        Some(format!("nn.Conv2d({cin}, {cout}, {k}, stride={}, padding={})", self.stride, self.padding))
    }

    fn torch_forward(&self, name: &str, ins: &[&str]) -> String {
        format!("self.{name}({})", ins[0])
    }

    fn torch_helper(&self) -> &'static str {
        ""
    }

    fn lower_onnx(&self, cx: &mut Lowerer<'_>, name: &str, ins: &[&str], out: &str) {
        let weight = [self.out_channels, self.in_channels, self.kernel, self.kernel];
        let (cout, s, p) = (self.out_channels, self.stride, self.padding);
        lower_conv_node(cx, "Conv", name, ins, out, weight, cout, (s, p));
    }

    /// dx as a `ConvTranspose` of dy with the same weight (`output_padding` restores the rows a
    /// stride-2 conv skipped), at stride 1 as a `Conv` with the flipped kernel; dW as a dilated conv of x by dy; db by a sum.
    fn lower_backward(&self, cx: &mut Lowerer<'_>, name: &str, at: &GradValues<'_>) -> LoweredGrads {
        let (_, h, w) = at.input_shapes[0].as_image().expect("checked image");
        let (_, ho, wo) = at.shape.as_image().expect("checked image");
        let (k, s, p) = (self.kernel, self.stride, self.padding);
        let weight = [self.out_channels, self.in_channels, k, k];
        let wv = cx.weight(name, "weight", &weight);
        let mut grads = LoweredGrads::default();
        if at.wants[0] && s == 1 && p < k {
            // Stride 1: a plain conv with the kernel flipped and in and out swapped, padded
            // k - 1 - p (onnxruntime's CPU Conv is about twice as fast as its ConvTranspose).
            let swapped = transpose(cx, grad_step(name, "weight_swapped"), &wv, &[1, 0, 2, 3]);
            let (ends, axes) = (cx.b.const_i64(&[i64::MIN, i64::MIN]), cx.b.const_i64(&[2, 3]));
            let (last, back) = (cx.b.const_i64(&[-1, -1]), cx.b.const_i64(&[-1, -1]));
            let slice_ins = [swapped.as_str(), &last, &ends, &axes, &back];
            let flipped = emit(cx, "Slice", grad_step(name, "weight_flipped"), &slice_ins, vec![]);
            let attrs = conv_attributes(k, 1, k - 1 - p);
            grads.inputs.push((0, emit(cx, "Conv", grad_step(name, "x"), &[at.dy, &flipped], attrs)));
        } else if at.wants[0] {
            let pad = |size: usize, out: usize| (size + 2 * p - k - (out - 1) * s) as i64;
            let mut attrs = conv_attributes(k, s, p);
            attrs.push(attribute("output_padding", Attr::Ints(&[pad(h, ho), pad(w, wo)])));
            let dx = emit(cx, "ConvTranspose", grad_step(name, "x"), &[at.dy, &wv], attrs);
            grads.inputs.push((0, dx));
        }
        let dw = conv_weight_grad(cx, name, (at.ins[0], [h, w], self.in_channels), (at.dy, [ho, wo]), (k, s, p));
        grads.params = vec![dw, channel_sum(cx, name, at.dy)];
        grads
    }
}

/// A conv's (or transposed conv's) weight of shape `weight` and bias of `cout`, PyTorch's init
/// for `fan_in`.
pub(super) fn conv_params(weight: [usize; 4], cout: usize, fan_in: usize) -> Vec<ParamSpec> {
    vec![
        ParamSpec { name: "weight", shape: weight.to_vec(), init: Init::KaimingUniform { fan_in } },
        ParamSpec { name: "bias", shape: vec![cout], init: Init::BiasUniform { fan_in } },
    ]
}

/// The one input of a conv (or transposed conv) as an image of `in_channels`, with a kernel and
/// a stride of at least 1: its height and width.
pub(super) fn conv_input(
    inputs: &[&Shape],
    in_channels: usize,
    kernel: usize,
    stride: usize,
) -> Result<(usize, usize), ShapeError> {
    arity(inputs, 1)?;
    let (c, h, w) = image(inputs, 0)?;
    if c != in_channels {
        return Err(ShapeError::ChannelMismatch { input: 0, expected: in_channels, found: c });
    }
    for (param, value) in [(Param::Kernel, kernel), (Param::Stride, stride)] {
        if value == 0 {
            return Err(ShapeError::OutOfRange { param, value, expected: "at least 1" });
        }
    }
    Ok((h, w))
}

/// An ONNX `Conv` or `ConvTranspose` (their attributes are the same) of `ins[0]` with the node's
/// weight (shape `weight`, square kernel `weight[2]`) and bias (`cout`), `(stride, padding)`.
#[allow(clippy::too_many_arguments)]
pub(super) fn lower_conv_node(
    cx: &mut Lowerer<'_>,
    op_type: &str,
    name: &str,
    ins: &[&str],
    out: &str,
    weight: [usize; 4],
    cout: usize,
    (stride, padding): (usize, usize),
) {
    let w = cx.weight(name, "weight", &weight);
    let bias = cx.weight(name, "bias", &[cout]);
    let attrs = conv_attributes(weight[2], stride, padding);
    cx.b.node(op_type, name, &[ins[0], &w, &bias], &[out], attrs);
}

/// A square `Conv` or `ConvTranspose`'s kernel, stride and padding attributes.
pub(super) fn conv_attributes(kernel: usize, stride: usize, padding: usize) -> Vec<AttributeProto> {
    let (k, s, p) = (kernel as i64, stride as i64, padding as i64);
    vec![
        attribute("kernel_shape", Attr::Ints(&[k, k])),
        attribute("strides", Attr::Ints(&[s, s])),
        attribute("pads", Attr::Ints(&[p, p, p, p])),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(kernel: usize, stride: usize, padding: usize) -> Conv2d {
        Conv2d { in_channels: 3, out_channels: 8, kernel, stride, padding }
    }

    #[test]
    fn output_size_follows_kernel_stride_and_padding() {
        let x = Shape::image(3, 28, 28);
        assert_eq!(conv(3, 1, 1).infer_shape(&[&x]), Ok(Shape::image(8, 28, 28)));
        assert_eq!(conv(3, 2, 1).infer_shape(&[&x]), Ok(Shape::image(8, 14, 14)));
        assert_eq!(conv(4, 1, 1).infer_shape(&[&x]), Ok(Shape::image(8, 27, 27)));
        assert_eq!(conv(3, 1, 1).params().iter().map(ParamSpec::numel).sum::<usize>(), 8 * 3 * 9 + 8);
    }

    #[test]
    fn errors_say_which_input_or_parameter() {
        let x = Shape::image(3, 8, 8);
        assert_eq!(
            conv(9, 1, 0).infer_shape(&[&x]),
            Err(ShapeError::EmptyOutput { kernel: 9, padding: 0, height: 8, width: 8 })
        );
        let y = Shape::image(4, 8, 8);
        assert_eq!(
            conv(3, 1, 1).infer_shape(&[&y]),
            Err(ShapeError::ChannelMismatch { input: 0, expected: 3, found: 4 })
        );
        assert!(matches!(
            conv(3, 0, 1).infer_shape(&[&x]),
            Err(ShapeError::OutOfRange { param: Param::Stride, value: 0, .. })
        ));
    }
}
