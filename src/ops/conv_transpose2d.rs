//! 2-D transposed convolution (PyTorch's `ConvTranspose2d`), square kernel: [Cin, H, W] ->
//! [Cout, H', W'] with H' = (H - 1) * stride - 2 * padding + kernel. Params: weight
//! [Cin, Cout, k, k] (PyTorch's layout for a transposed conv), bias [Cout].
//!
//! It is the adjoint of the conv `C` from [Cout, H', W'] to [Cin, H, W] with the same weight,
//! kernel, stride and padding, so the conv kernels compute it: the forward is C's input
//! gradient, the input gradient is C's forward, the weight gradient is C's weight gradient with
//! the roles of input and output gradient swapped.

use super::conv2d::{conv_attributes, conv_input, conv_params, lower_conv_node};
use super::exec::weight_and_bias;
use super::{Param, ParamSpec, PrimitiveOp, ShapeError};
use super::{Backward, Forward};
use crate::base::Shape;
use crate::kernels::conv;
use crate::kernels::Real;
use crate::onnx_ir::lower::Lowerer;
use super::conv_grad::conv_weight_grad;
use super::lower_grad::{channel_sum, emit, grad_step};
use super::{GradValues, LoweredGrads};

#[derive(Debug, Clone, PartialEq)]
pub struct ConvTranspose2d {
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
}

impl ConvTranspose2d {
    /// The conv `C` this op is the adjoint of, for an input of shape `input` giving `output`:
    /// C reads this op's output size and channels and writes its input's.
    fn adjoint(&self, input: &Shape, output: &Shape) -> conv::ConvGeom {
        let (_, h, w) = input.as_image().expect("checked image");
        let (_, ho, wo) = output.as_image().expect("checked image");
        conv::ConvGeom {
            cin: self.out_channels,
            cout: self.in_channels,
            k: self.kernel,
            stride: self.stride,
            pad: self.padding,
            h: ho,
            w: wo,
            ho: h,
            wo: w,
        }
    }

    /// The output size along a side of `n` pixels, `None` when it would be empty.
    fn out_size(&self, n: usize) -> Option<usize> {
        let span = n.checked_sub(1)? * self.stride + self.kernel;
        span.checked_sub(2 * self.padding).filter(|&v| v > 0)
    }
}

impl PrimitiveOp for ConvTranspose2d {
    fn kind(&self) -> &'static str {
        "conv_transpose2d"
    }

    /// PyTorch's init: its fan-in is computed from the weight's dimension 1, here Cout.
    fn params(&self) -> Vec<ParamSpec> {
        let weight = [self.in_channels, self.out_channels, self.kernel, self.kernel];
        conv_params(weight, self.out_channels, self.out_channels * self.kernel * self.kernel)
    }

    fn infer_shape(&self, inputs: &[&Shape]) -> Result<Shape, ShapeError> {
        let (h, w) = conv_input(inputs, self.in_channels, self.kernel, self.stride)?;
        match (self.out_size(h), self.out_size(w)) {
            (Some(oh), Some(ow)) => Ok(Shape::image(self.out_channels, oh, ow)),
            // the padding crops the whole output away
            _ => Err(ShapeError::OutOfRange {
                param: Param::Padding,
                value: self.padding,
                expected: "less than half of (size - 1) * stride + kernel",
            }),
        }
    }

    /// Each input pixel adds a k x k x Cout patch: the same count as the adjoint conv.
    fn flops(&self, inputs: &[&Shape], _: &Shape) -> u128 {
        2 * (self.out_channels * self.kernel * self.kernel) as u128 * inputs[0].numel() as u128
    }

    /// dW is the adjoint conv's weight gradient with x as its output gradient: it needs x.
    fn backward_keeps_inputs(&self) -> bool {
        true
    }

    fn forward<T: Real>(&self, cx: Forward<'_, T>) {
        let geom = self.adjoint(cx.input_shapes[0], cx.shape);
        let (w, bias) = (cx.params[0], cx.params[1]);
        conv::input_grad(cx.workers, &geom, cx.batch, w, cx.inputs[0], cx.out);
        let plane = cx.shape.numel() / self.out_channels;
        for image in cx.out.chunks_exact_mut(cx.shape.numel()) {
            for (channel, &b) in image.chunks_exact_mut(plane).zip(bias) {
                channel.iter_mut().for_each(|v| *v += b);
            }
        }
    }

    fn backward<T: Real>(&self, cx: Backward<'_, '_, T>, dy: Vec<T>) {
        let geom = self.adjoint(cx.input_shapes[0], cx.shape);
        let (x, w) = (cx.inputs[0], cx.params[0]);
        // the adjoint conv's bias has Cin entries: zero for dx, a discarded gradient for dW
        let mut zeros = cx.pool.take(self.in_channels);
        zeros.fill(T::ZERO);
        let dx = cx.wants[0].then(|| {
            let mut dx = cx.pool.take(cx.batch * cx.input_shapes[0].numel());
            conv::forward(cx.workers, &geom, cx.batch, &dy, w, &zeros, &mut dx);
            dx
        });
        let (dw, db) = weight_and_bias(cx.param_grads);
        conv::backward(cx.workers, &geom, cx.batch, &dy, w, x, None, dw, &mut zeros);
        cx.pool.give(zeros);
        let plane = cx.shape.numel() / self.out_channels;
        db.fill(T::ZERO);
        for image in dy.chunks_exact(cx.shape.numel()) {
            for (acc, channel) in db.iter_mut().zip(image.chunks_exact(plane)) {
                *acc += channel.iter().fold(T::ZERO, |s, &v| s + v);
            }
        }
        cx.pool.give(dy);
        cx.input_grads.extend(dx.map(|dx| (0, dx)));
    }

    /// PyTorch's layer has this weight layout and output size (no output padding).
    fn torch_layer(&self) -> Option<String> {
        let (cin, cout, k) = (self.in_channels, self.out_channels, self.kernel);
        Some(format!("nn.ConvTranspose2d({cin}, {cout}, {k}, stride={}, padding={})", self.stride, self.padding))
    }

    fn torch_forward(&self, name: &str, ins: &[&str]) -> String {
        format!("self.{name}({})", ins[0])
    }

    fn torch_helper(&self) -> &'static str {
        ""
    }

    fn lower_onnx(&self, cx: &mut Lowerer<'_>, name: &str, ins: &[&str], out: &str) {
        let weight = [self.in_channels, self.out_channels, self.kernel, self.kernel];
        let (cout, s, p) = (self.out_channels, self.stride, self.padding);
        lower_conv_node(cx, "ConvTranspose", name, ins, out, weight, cout, (s, p));
    }

    /// The adjoint's forward: dx is a `Conv` of dy with the same weight; dW the adjoint conv's
    /// weight gradient with input and output gradient swapped; db by a sum.
    fn lower_backward(&self, cx: &mut Lowerer<'_>, name: &str, at: &GradValues<'_>) -> LoweredGrads {
        let (_, h, w) = at.input_shapes[0].as_image().expect("checked image");
        let (_, ho, wo) = at.shape.as_image().expect("checked image");
        let (k, s, p) = (self.kernel, self.stride, self.padding);
        let weight = [self.in_channels, self.out_channels, k, k];
        let wv = cx.weight(name, "weight", &weight);
        let mut grads = LoweredGrads::default();
        if at.wants[0] {
            let attrs = conv_attributes(k, s, p);
            let dx = emit(cx, "Conv", grad_step(name, "x"), &[at.dy, &wv], attrs);
            grads.inputs.push((0, dx));
        }
        let dw = conv_weight_grad(cx, name, (at.dy, [ho, wo], self.out_channels), (at.ins[0], [h, w]), (k, s, p));
        grads.params = vec![dw, channel_sum(cx, name, at.dy)];
        grads
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::Init;

    fn convt(kernel: usize, stride: usize, padding: usize) -> ConvTranspose2d {
        ConvTranspose2d { in_channels: 3, out_channels: 8, kernel, stride, padding }
    }

    #[test]
    fn output_size_follows_kernel_stride_and_padding() {
        let x = Shape::image(3, 14, 10);
        // (H - 1) * stride - 2 * padding + kernel
        assert_eq!(convt(4, 2, 1).infer_shape(&[&x]), Ok(Shape::image(8, 28, 20)));
        assert_eq!(convt(2, 2, 0).infer_shape(&[&x]), Ok(Shape::image(8, 28, 20)));
        assert_eq!(convt(3, 1, 1).infer_shape(&[&x]), Ok(Shape::image(8, 14, 10)));
        assert_eq!(convt(3, 2, 1).infer_shape(&[&x]), Ok(Shape::image(8, 27, 19)));
        assert_eq!(convt(1, 1, 0).infer_shape(&[&Shape::image(3, 1, 1)]), Ok(Shape::image(8, 1, 1)));
    }

    #[test]
    fn params_have_pytorch_layout_and_fan_in() {
        let p = convt(4, 2, 1).params();
        assert_eq!(p[0].shape, vec![3, 8, 4, 4]);
        assert_eq!(p[0].init, Init::KaimingUniform { fan_in: 8 * 16 });
        assert_eq!(p[1].shape, vec![8]);
        assert_eq!(p[1].init, Init::BiasUniform { fan_in: 8 * 16 });
        let x = Shape::image(3, 5, 5);
        let y = convt(4, 2, 1).infer_shape(&[&x]).unwrap();
        assert_eq!(convt(4, 2, 1).flops(&[&x], &y), 2 * 8 * 16 * 3 * 25);
    }

    #[test]
    fn errors_say_which_input_or_parameter() {
        let x = Shape::image(3, 2, 4);
        // (2 - 1) * 1 + 3 - 2 * 2 = 0: the padding crops everything
        assert!(matches!(
            convt(3, 1, 2).infer_shape(&[&x]),
            Err(ShapeError::OutOfRange { param: Param::Padding, value: 2, .. })
        ));
        let y = Shape::image(4, 8, 8);
        assert_eq!(
            convt(3, 1, 1).infer_shape(&[&y]),
            Err(ShapeError::ChannelMismatch { input: 0, expected: 3, found: 4 })
        );
        assert!(matches!(
            convt(3, 0, 1).infer_shape(&[&x]),
            Err(ShapeError::OutOfRange { param: Param::Stride, value: 0, .. })
        ));
        assert!(matches!(
            convt(0, 1, 0).infer_shape(&[&x]),
            Err(ShapeError::OutOfRange { param: Param::Kernel, value: 0, .. })
        ));
        assert!(matches!(
            convt(3, 1, 1).infer_shape(&[&Shape::vector(3)]),
            Err(ShapeError::WrongRank { input: 0, .. })
        ));
    }
}
