//! The weight gradient of a convolution as ONNX nodes, shared by the conv and the transposed
//! conv (its adjoint, which passes the roles of input and output gradient swapped). Two forms:
//! a `Conv` over the batch dilated by the stride, and the taps as strided `Slice`s stacked into
//! columns and contracted with the output gradient by one batched `MatMul`. Taps is the default:
//! on onnxruntime's CPU provider the unet.toml step at batch 64 took 1.6 s with it, 2.5 s with the
//! dilated form (docs/train-step.md); `MDC_CONV_WEIGHT_GRAD=dilated` compiles the other form, to
//! measure it on a device.

use super::lower_grad::{emit, grad_step, reduce_sum, reshape, transpose};
use crate::onnx_ir::builder::{attribute, Attr};
use crate::onnx_ir::lower::Lowerer;

/// Which form a compiled step uses (read when it is compiled).
fn dilated_form() -> bool {
    std::env::var("MDC_CONV_WEIGHT_GRAD").is_ok_and(|v| v == "dilated")
}

/// The weight gradient of the conv reading `input` (spatial size `in_hw`, `c_in` channels) whose
/// output gradient is `grad_out` (`out_hw`), kernel, stride and padding `(k, s, p)`, as
/// [C(grad_out), C(input), k, k].
pub(super) fn conv_weight_grad(
    cx: &mut Lowerer<'_>,
    name: &str,
    (input, in_hw, c_in): (&str, [usize; 2], usize),
    (grad_out, out_hw): (&str, [usize; 2]),
    (k, s, p): (usize, usize, usize),
) -> String {
    if dilated_form() {
        dilated_conv(cx, name, (input, in_hw), (grad_out, out_hw), (k, s, p))
    } else {
        taps(cx, name, (input, c_in), (grad_out, out_hw), (k, s, p))
    }
}

/// As columns: each tap's strided slice of the padded input, [N, C k k, Ho Wo], times the output
/// gradient [N, Ho Wo, C'] per image, summed over the batch.
fn taps(
    cx: &mut Lowerer<'_>,
    name: &str,
    (input, c_in): (&str, usize),
    (grad_out, out_hw): (&str, [usize; 2]),
    (k, s, p): (usize, usize, usize),
) -> String {
    let (pi, si) = (p as i64, s as i64);
    let padded = if p > 0 {
        let pads = cx.b.const_i64(&[0, 0, pi, pi, 0, 0, pi, pi]);
        emit(cx, "Pad", grad_step(name, "input_padded"), &[input, &pads], vec![])
    } else {
        input.to_string()
    };
    let (axes, steps) = (cx.b.const_i64(&[2, 3]), cx.b.const_i64(&[si, si]));
    let span = |o: usize| ((o - 1) * s + 1) as i64;
    let mut cols = Vec::with_capacity(k * k);
    for a in 0..k as i64 {
        for b in 0..k as i64 {
            let starts = cx.b.const_i64(&[a, b]);
            let ends = cx.b.const_i64(&[a + span(out_hw[0]), b + span(out_hw[1])]);
            let tap = grad_step(name, &format!("tap{a}_{b}"));
            cx.b.node("Slice", &tap, &[&padded, &starts, &ends, &axes, &steps], &[&tap], vec![]);
            cols.push(tap);
        }
    }
    let refs: Vec<&str> = cols.iter().map(String::as_str).collect();
    // [N, C, Ho, Wo] each, stacked after C: [N, C * k * k, Ho * Wo] in the weight's (c, a, b) order.
    let stacked = if refs.len() == 1 {
        refs[0].to_string()
    } else {
        let unsq = cx.b.const_i64(&[2]);
        let lifted: Vec<String> =
            refs.iter().map(|t| emit(cx, "Unsqueeze", format!("{t}/lifted"), &[t, &unsq], vec![])).collect();
        let lifted: Vec<&str> = lifted.iter().map(String::as_str).collect();
        emit(cx, "Concat", grad_step(name, "taps"), &lifted, vec![attribute("axis", Attr::Int(2))])
    };
    let columns = reshape(cx, grad_step(name, "columns"), &stacked, &[0, (c_in * k * k) as i64, -1]);
    let g = reshape(cx, grad_step(name, "grad_out_rows"), grad_out, &[0, 0, -1]);
    let g_t = transpose(cx, grad_step(name, "grad_out_t"), &g, &[0, 2, 1]);
    let per_image = emit(cx, "MatMul", grad_step(name, "weight_per_image"), &[&columns, &g_t], vec![]);
    let summed = reduce_sum(cx, grad_step(name, "weight_t"), &per_image, &[0], false);
    let w = transpose(cx, grad_step(name, "weight_rows"), &summed, &[1, 0]);
    reshape(cx, grad_step(name, "weight"), &w, &[0, c_in as i64, k as i64, k as i64])
}

/// As a conv over the batch, the input's channels as its images and the output gradient as its
/// filters, dilated by the stride.
fn dilated_conv(
    cx: &mut Lowerer<'_>,
    name: &str,
    (input, in_hw): (&str, [usize; 2]),
    (grad_out, out_hw): (&str, [usize; 2]),
    (k, s, p): (usize, usize, usize),
) -> String {
    let perm = [1, 0, 2, 3];
    let xt = transpose(cx, grad_step(name, "input_t"), input, &perm);
    let gt = transpose(cx, grad_step(name, "grad_out_t"), grad_out, &perm);
    // The taps this conv reaches: at least k; the excess (rows the stride never reached) is cut
    // from the end padding, or sliced off where there is not enough padding to cut.
    let reach = |i: usize| in_hw[i] + 2 * p - (out_hw[i] - 1) * s;
    let excess = [reach(0) - k, reach(1) - k];
    let cut = |e: usize| e.min(p);
    let (pi, si) = (p as i64, s as i64);
    let pads = [pi, pi, (p - cut(excess[0])) as i64, (p - cut(excess[1])) as i64];
    let conv = emit(
        cx,
        "Conv",
        grad_step(name, "weight_taps"),
        &[&xt, &gt],
        vec![attribute("dilations", Attr::Ints(&[si, si])), attribute("pads", Attr::Ints(&pads))],
    );
    let taps = if excess.iter().any(|&e| e > cut(e)) {
        let (starts, ends, axes) =
            (cx.b.const_i64(&[0, 0]), cx.b.const_i64(&[k as i64, k as i64]), cx.b.const_i64(&[2, 3]));
        emit(cx, "Slice", grad_step(name, "weight_cut"), &[&conv, &starts, &ends, &axes], vec![])
    } else {
        conv
    };
    transpose(cx, grad_step(name, "weight"), &taps, &perm)
}
