//! The step's arithmetic around the network: the noisy input and the target from the batch,
//! the weighted MSE and its gradient, then over the flat vectors the global-norm clipping,
//! AdamW and the EMA, each written as the interpreter computes it (`train/state.rs`,
//! `optim.rs`, `train/ema.rs`) so one step agrees to rounding.

use super::{names, StepRecipe};
use crate::onnx_ir::builder::{attribute, Attr};
use crate::onnx_ir::lower::Lowerer;
use crate::ops::lower_grad::{emit, reduce_sum, reshape};

/// The per-image coefficients, each as an [N, 1, 1, 1] value, split from the `coefficients`
/// input [5, N] (rows in [`names::COEFFICIENT_ROWS`] order).
pub(crate) struct Coefficients {
    pub signal: String,
    pub noise: String,
    pub target_signal: String,
    pub target_noise: String,
    pub grad_scale: String,
}

pub(crate) fn coefficients(cx: &mut Lowerer<'_>) -> Coefficients {
    let rows: Vec<String> = names::COEFFICIENT_ROWS.iter().map(|r| format!("coef/{r}:row")).collect();
    split_rows(cx, names::COEFFICIENTS, "coef/split", &rows);
    let per_image: Vec<String> = names::COEFFICIENT_ROWS
        .iter()
        .zip(&rows)
        .map(|(r, row)| reshape(cx, format!("coef/{r}"), row, &[-1, 1, 1, 1]))
        .collect();
    let [signal, noise, target_signal, target_noise, grad_scale] =
        <[String; 5]>::try_from(per_image).expect("five rows");
    Coefficients { signal, noise, target_signal, target_noise, grad_scale }
}

/// a * x0 + b * noise, per image.
fn mix(cx: &mut Lowerer<'_>, out: &str, a: &str, b: &str) -> String {
    let ax = emit(cx, "Mul", format!("{out}/signal"), &[a, names::X0], vec![]);
    let bn = emit(cx, "Mul", format!("{out}/noise"), &[b, names::NOISE], vec![]);
    emit(cx, "Add", out.to_string(), &[&ax, &bn], vec![])
}

/// x_t = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) noise (`NoiseSchedule::add_noise`).
pub(crate) fn noisy_images(cx: &mut Lowerer<'_>, c: &Coefficients) -> String {
    mix(cx, "x_t", &c.signal, &c.noise)
}

/// From the prediction: the outputs `loss` (the weighted mean of the images' MSE, as
/// `mse_and_grad`) and `image_mse` [N] (unweighted, for the log's quarters), and the value
/// holding the loss's gradient w.r.t. the prediction, (2 w_i / numel) (pred - target).
pub(crate) fn loss(cx: &mut Lowerer<'_>, c: &Coefficients, prediction: &str, image_numel: usize) -> String {
    let target = mix(cx, "loss/target", &c.target_signal, &c.target_noise);
    let err = emit(cx, "Sub", "loss/error".into(), &[prediction, &target], vec![]);
    let sq = emit(cx, "Mul", "loss/error_sq".into(), &[&err, &err], vec![]);
    let per_image = reduce_sum(cx, "loss/image_sum".into(), &sq, &[1, 2, 3], true);
    let numel = cx.b.const_f32(&format!("numel{image_numel}"), &[], &[image_numel as f32]);
    let mse = emit(cx, "Div", "loss/image_mse".into(), &[&per_image, &numel], vec![]);
    reshape(cx, names::IMAGE_MSE.into(), &mse, &[-1]);
    // sum_i w_i sum_i / numel = 1/2 sum_i (2 w_i / numel) sum_i.
    let weighted = emit(cx, "Mul", "loss/weighted".into(), &[&per_image, &c.grad_scale], vec![]);
    let total =
        emit(cx, "ReduceSum", "loss/total".into(), &[&weighted], vec![attribute("keepdims", Attr::Int(0))]);
    let half = cx.b.const_f32("half", &[], &[0.5]);
    cx.b.node("Mul", names::LOSS, &[&total, &half], &[names::LOSS], vec![]);
    emit(cx, "Mul", "loss/grad".into(), &[&err, &c.grad_scale], vec![])
}

/// The scalars split from `step_scalars` [5] (rows in [`names::SCALAR_ROWS`] order).
fn scalars(cx: &mut Lowerer<'_>) -> Vec<String> {
    let outs: Vec<String> = names::SCALAR_ROWS.iter().map(|r| format!("scalar/{r}")).collect();
    split_rows(cx, names::STEP_SCALARS, "scalar/split", &outs);
    outs
}

/// One `Split` node `node` of `input`'s rows (axis 0), one row into each of `outs`.
fn split_rows(cx: &mut Lowerer<'_>, input: &str, node: &str, outs: &[String]) {
    let refs: Vec<&str> = outs.iter().map(String::as_str).collect();
    let ones = cx.b.const_i64(&vec![1; outs.len()]);
    cx.b.node("Split", node, &[input, &ones], &refs, vec![attribute("axis", Attr::Int(0))]);
}

/// A float constant named by its value.
fn constant(cx: &mut Lowerer<'_>, what: &str, v: f32) -> String {
    cx.b.const_f32(&format!("{what}{v:e}"), &[1], &[v])
}

/// Whether `v` (a one-element value) is neither NaN nor infinite.
fn finite(cx: &mut Lowerer<'_>, v: &str) -> String {
    let nan = emit(cx, "IsNaN", format!("{v}/is_nan"), &[v], vec![]);
    let inf = emit(cx, "IsInf", format!("{v}/is_inf"), &[v], vec![]);
    let bad = emit(cx, "Or", format!("{v}/not_finite"), &[&nan, &inf], vec![]);
    emit(cx, "Not", format!("{v}/finite"), &[&bad], vec![])
}

/// From the flat gradient `grads`: the outputs `grad_norm` and the new state (`params_out`,
/// `adam_m_out`, `adam_v_out`, `ema_out`). A step whose loss or gradient norm is not finite
/// leaves the state as it was (the interpreter stops there; the host reports it).
pub(crate) fn optimizer(cx: &mut Lowerer<'_>, recipe: &StepRecipe, grads: &str) {
    // Summed in f64 as the interpreter sums: an f32 sum over millions of squares is off by ~1e-4.
    let wide = emit(cx, "Cast", "clip/grads_f64".into(), &[grads], vec![attribute("to", Attr::Int(11))]);
    let sq = emit(
        cx,
        "ReduceSumSquare",
        "clip/sum_sq".into(),
        &[&wide],
        vec![attribute("keepdims", Attr::Int(1))],
    );
    let norm = emit(cx, "Sqrt", "clip/norm_f64".into(), &[&sq], vec![]);
    let norm = emit(cx, "Cast", "clip/norm".into(), &[&norm], vec![attribute("to", Attr::Int(1))]);
    reshape(cx, names::GRAD_NORM.into(), &norm, &[]);
    let g = if recipe.clip_grad > 0.0 {
        // factor = max_norm / (norm + 1e-6), applied only when below 1 (`clip_grad_norm`).
        let tiny = constant(cx, "clip_eps", 1e-6);
        let max = constant(cx, "clip_max", recipe.clip_grad);
        let one = constant(cx, "one_", 1.0);
        let denom = emit(cx, "Add", "clip/denom".into(), &[&norm, &tiny], vec![]);
        let factor = emit(cx, "Div", "clip/factor".into(), &[&max, &denom], vec![]);
        let factor = emit(cx, "Min", "clip/factor_at_most_1".into(), &[&factor, &one], vec![]);
        emit(cx, "Mul", "clip/grads".into(), &[grads, &factor], vec![])
    } else {
        grads.to_string()
    };
    let s = scalars(cx);
    let (decay, step_size, inv_sqrt_bc2, ema_decay, ema_keep) = (&s[0], &s[1], &s[2], &s[3], &s[4]);
    let b1 = constant(cx, "beta1_", recipe.beta1);
    let one_b1 = constant(cx, "one_minus_beta1_", 1.0 - recipe.beta1);
    let b2 = constant(cx, "beta2_", recipe.beta2);
    let one_b2 = constant(cx, "one_minus_beta2_", 1.0 - recipe.beta2);
    let eps = constant(cx, "adam_eps", recipe.eps);
    let e =
        |cx: &mut Lowerer<'_>, op: &str, out: &str, ins: &[&str]| emit(cx, op, out.to_string(), ins, vec![]);
    // m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g g.
    let m_old = e(cx, "Mul", "adamw/m_kept", &[names::ADAM_M, &b1]);
    let m_new = e(cx, "Mul", "adamw/m_grad", &[&g, &one_b1]);
    let m = e(cx, "Add", "adamw/m", &[&m_old, &m_new]);
    let v_old = e(cx, "Mul", "adamw/v_kept", &[names::ADAM_V, &b2]);
    let v_g = e(cx, "Mul", "adamw/v_grad1", &[&g, &one_b2]);
    let v_new = e(cx, "Mul", "adamw/v_grad", &[&v_g, &g]);
    let v = e(cx, "Add", "adamw/v", &[&v_old, &v_new]);
    // p = p (1 - lr wd) - (lr / bc1) m / (sqrt(v) / sqrt(bc2) + eps).
    let root = e(cx, "Sqrt", "adamw/sqrt_v", &[&v]);
    let scaled = e(cx, "Mul", "adamw/sqrt_v_hat", &[&root, inv_sqrt_bc2]);
    let denom = e(cx, "Add", "adamw/denom", &[&scaled, &eps]);
    let num = e(cx, "Mul", "adamw/step_m", &[&m, step_size]);
    let update = e(cx, "Div", "adamw/update", &[&num, &denom]);
    let decayed = e(cx, "Mul", "adamw/decayed", &[names::PARAMS, decay]);
    let p = e(cx, "Sub", "adamw/params", &[&decayed, &update]);
    // ema = d ema + (1 - d) p.
    let ema_old = e(cx, "Mul", "ema/kept", &[names::EMA, ema_decay]);
    let ema_new = e(cx, "Mul", "ema/new", &[&p, ema_keep]);
    let ema = e(cx, "Add", "ema/ema", &[&ema_old, &ema_new]);
    let loss_ok = finite(cx, names::LOSS);
    let norm_ok = finite(cx, &norm);
    let loss_ok = reshape(cx, "guard/loss_finite".into(), &loss_ok, &[1]);
    let ok = e(cx, "And", "guard/finite", &[&loss_ok, &norm_ok]);
    for (new, old, out) in [
        (&p, names::PARAMS, names::PARAMS_OUT),
        (&m, names::ADAM_M, names::ADAM_M_OUT),
        (&v, names::ADAM_V, names::ADAM_V_OUT),
        (&ema, names::EMA, names::EMA_OUT),
    ] {
        cx.b.node("Where", out, &[&ok, new, old], &[out], vec![]);
    }
}
