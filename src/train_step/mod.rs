//! The whole training step compiled into one standard ONNX graph (opset 17, default domain
//! only) that any onnxruntime build runs: the forward, every op's backward lowering
//! ([`crate::ops::PrimitiveOp::lower_backward`]), the loss with the recipe's target and min-SNR
//! weights, global-norm clipping, AdamW and the EMA.
//!
//! The state is four flat f32 vectors of the same length P, every parameter of
//! [`Graph::params`] flattened and concatenated in that order ([`FlatLayout`]): `params`,
//! `adam_m`, `adam_v`, `ema`. Inputs also carry the step's scalars and the batch; the host
//! computes everything the interpreter computes on the host ([`host`]). Outputs are the new
//! state (`*_out`, each from a node, never an input passed through), `loss`, `grad_norm` and
//! `image_mse`. See docs/train-step.md.

mod autodiff;
pub mod host;
mod update;

use ndarray::{ArrayD, IxDyn};

use crate::graph::Graph;
use crate::onnx::{value_info, INPUT_T, INPUT_Y, IR_VERSION, OPSET};
use crate::onnx_ir::builder::{attribute, Attr};
use crate::onnx_ir::lower::Lowerer;
use crate::onnx_ir::proto::{
    tensor_proto::DataType, tensor_shape_proto::dimension, GraphProto, ModelProto, OperatorSetIdProto,
    ValueInfoProto,
};
use crate::ops::lower_grad::emit;
use crate::params::Params;

/// The graph's input and output names.
pub mod names {
    pub const PARAMS: &str = "params";
    pub const ADAM_M: &str = "adam_m";
    pub const ADAM_V: &str = "adam_v";
    pub const EMA: &str = "ema";
    /// [5] f32, rows [`SCALAR_ROWS`].
    pub const STEP_SCALARS: &str = "step_scalars";
    pub const SCALAR_ROWS: [&str; 5] = ["decay", "step_size", "inv_sqrt_bc2", "ema_decay", "ema_keep"];
    /// [N, C, H, W] f32: the clean images and their noise.
    pub const X0: &str = "x0";
    pub const NOISE: &str = "noise";
    /// [5, N] f32, rows [`COEFFICIENT_ROWS`].
    pub const COEFFICIENTS: &str = "coefficients";
    pub const COEFFICIENT_ROWS: [&str; 5] =
        ["signal", "noise", "target_signal", "target_noise", "grad_scale"];
    pub const PARAMS_OUT: &str = "params_out";
    pub const ADAM_M_OUT: &str = "adam_m_out";
    pub const ADAM_V_OUT: &str = "adam_v_out";
    pub const EMA_OUT: &str = "ema_out";
    pub const LOSS: &str = "loss";
    pub const GRAD_NORM: &str = "grad_norm";
    pub const IMAGE_MSE: &str = "image_mse";
    /// The gradient-only graph ([`super::compile_gradients`]): its input, the prediction's
    /// gradient, and its outputs, the flat parameter gradient and the images' gradient.
    pub const DY: &str = "dy";
    pub const GRADS: &str = "grads";
    pub const DX: &str = "dx";
    /// The state inputs and the outputs that replace them, in order.
    pub const STATE: [(&str, &str); 4] =
        [(PARAMS, PARAMS_OUT), (ADAM_M, ADAM_M_OUT), (ADAM_V, ADAM_V_OUT), (EMA, EMA_OUT)];
}

/// The recipe settings the graph bakes in (the rest arrives per step, see [`host`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepRecipe {
    /// Global-norm clipping's max norm; 0 or less: none.
    pub clip_grad: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
}

/// Why a graph cannot be compiled into a training step.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("the model's input must be an image [C, H, W], found {0}")]
    InputNotImage(crate::graph::Shape),
    #[error(
        "the model's output must have the input's shape {expected} (it predicts the noise), found {found}"
    )]
    OutputShape { expected: crate::graph::Shape, found: crate::graph::Shape },
    #[error("the model has no parameters to train")]
    NoParameters,
}

/// Where each parameter lies in the flat state vectors: [`Graph::params`] order, each tensor
/// flattened in its (PyTorch) layout.
#[derive(Debug, Clone, PartialEq)]
pub struct FlatLayout {
    pub names: Vec<String>,
    pub shapes: Vec<Vec<usize>>,
    /// Start of each parameter; the last entry is the total length P.
    pub offsets: Vec<usize>,
}

impl FlatLayout {
    pub fn of(graph: &Graph) -> FlatLayout {
        let (names, shapes): (Vec<String>, Vec<Vec<usize>>) =
            graph.params().into_iter().map(|(n, spec)| (n, spec.shape)).unzip();
        let mut offsets = vec![0];
        for s in &shapes {
            offsets.push(offsets.last().copied().unwrap_or(0) + s.iter().product::<usize>());
        }
        FlatLayout { names, shapes, offsets }
    }

    /// P, the length of each state vector.
    pub fn len(&self) -> usize {
        self.offsets.last().copied().unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `params` concatenated (its tensors are in this layout's order: checked by the caller).
    pub fn flatten(&self, params: &Params) -> Vec<f32> {
        assert_eq!(params.names, self.names, "parameters in the layout's order");
        let mut out = Vec::with_capacity(self.len());
        for t in &params.tensors {
            out.extend(t.iter());
        }
        out
    }

    /// The tensors of a flat vector.
    pub fn unflatten(&self, flat: &[f32]) -> Params {
        assert_eq!(flat.len(), self.len(), "a flat vector of the layout's length");
        let tensors = self
            .shapes
            .iter()
            .zip(self.offsets.windows(2))
            .map(|(s, w)| ArrayD::from_shape_vec(IxDyn(s), flat[w[0]..w[1]].to_vec()).expect("numel matches"))
            .collect();
        Params { names: self.names.clone(), tensors }
    }
}

/// The whole training step of `graph` under `recipe` (see the module's documentation).
pub fn compile(graph: &Graph, recipe: &StepRecipe) -> Result<ModelProto, CompileError> {
    check(graph, true)?;
    let layout = FlatLayout::of(graph);
    let mut cx = Lowerer::with_weight_values();
    split_params(&mut cx, &layout);
    let coef = update::coefficients(&mut cx);
    let x_t = update::noisy_images(&mut cx, &coef);
    let fwd = autodiff::forward(&mut cx, graph, &x_t);
    let dy = update::loss(&mut cx, &coef, fwd.prediction(graph), graph.input_shape().numel());
    let grads = autodiff::backward(&mut cx, graph, &fwd, &dy, false);
    let flat = flat_grads(&mut cx, &layout, grads.params, "grads/flat");
    update::optimizer(&mut cx, recipe, &flat);

    let p = dim_fixed(layout.len());
    let state = |name: &str| value_info(name, DataType::Float, vec![p.clone()]);
    let mut inputs: Vec<ValueInfoProto> = names::STATE.iter().map(|(i, _)| state(i)).collect();
    inputs.push(value_info(names::STEP_SCALARS, DataType::Float, vec![dim_fixed(5)]));
    inputs.extend(batch_inputs(graph));
    inputs.push(value_info(names::COEFFICIENTS, DataType::Float, vec![dim_fixed(5), dim_n()]));
    let mut outputs: Vec<ValueInfoProto> = names::STATE.iter().map(|(_, o)| state(o)).collect();
    outputs.push(value_info(names::LOSS, DataType::Float, vec![]));
    outputs.push(value_info(names::GRAD_NORM, DataType::Float, vec![]));
    outputs.push(value_info(names::IMAGE_MSE, DataType::Float, vec![dim_n()]));
    Ok(model(cx, inputs, outputs, "mdc training step: forward, backward, clipping, AdamW, EMA"))
}

/// The gradients of sum(dy * prediction) for images `x` at `t` (and labels `y`): outputs the
/// flat parameter gradient `grads` and the images' gradient `dx`, from the forward and backward
/// alone, as the training step has them. Checks each op's backward lowering against the
/// interpreter's.
pub fn compile_gradients(graph: &Graph) -> Result<ModelProto, CompileError> {
    check(graph, false)?;
    let layout = FlatLayout::of(graph);
    let mut cx = Lowerer::with_weight_values();
    if !layout.is_empty() {
        split_params(&mut cx, &layout);
    }
    let fwd = autodiff::forward(&mut cx, graph, crate::onnx::INPUT_X);
    let grads = autodiff::backward(&mut cx, graph, &fwd, names::DY, true);
    let mut outputs = vec![];
    if !layout.is_empty() {
        let flat = flat_grads(&mut cx, &layout, grads.params, "grads/flat");
        cx.b.node("Identity", names::GRADS, &[&flat], &[names::GRADS], vec![]);
        outputs.push(value_info(names::GRADS, DataType::Float, vec![dim_fixed(layout.len())]));
    }
    let dx = grads.input.unwrap_or_else(|| {
        let zero = cx.b.const_f32("zero", &[], &[0.0]);
        emit(&mut cx, "Mul", "dx/zero".into(), &[crate::onnx::INPUT_X, &zero], vec![])
    });
    cx.b.node("Identity", names::DX, &[&dx], &[names::DX], vec![]);
    outputs.push(value_info(names::DX, DataType::Float, image_dims(graph)));
    let mut inputs = vec![];
    if !layout.is_empty() {
        inputs.push(value_info(names::PARAMS, DataType::Float, vec![dim_fixed(layout.len())]));
    }
    inputs.push(value_info(crate::onnx::INPUT_X, DataType::Float, image_dims(graph)));
    inputs.push(value_info(INPUT_T, DataType::Float, vec![dim_n()]));
    if graph.label.is_some() {
        inputs.push(value_info(INPUT_Y, DataType::Int64, vec![dim_n()]));
    }
    let out_dims =
        std::iter::once(dim_n()).chain(graph.output_shape().0.iter().map(|&d| dim_fixed(d))).collect();
    inputs.push(value_info(names::DY, DataType::Float, out_dims));
    Ok(model(cx, inputs, outputs, "mdc gradients of sum(dy * prediction)"))
}

/// Checks that the input is an image [C, H, W]; for a training step, also that the output has
/// its shape and that there are parameters to train.
fn check(graph: &Graph, step: bool) -> Result<(), CompileError> {
    let input = graph.input_shape();
    input.as_image().ok_or_else(|| CompileError::InputNotImage(input.clone()))?;
    if !step {
        return Ok(());
    }
    if graph.output_shape() != input {
        return Err(CompileError::OutputShape {
            expected: input.clone(),
            found: graph.output_shape().clone(),
        });
    }
    if graph.param_count() == 0 {
        return Err(CompileError::NoParameters);
    }
    Ok(())
}

/// One `Split` of the `params` input into each parameter's `<name>:flat` value, which the
/// lowerer reshapes where an op reads it.
fn split_params(cx: &mut Lowerer<'_>, layout: &FlatLayout) {
    let sizes: Vec<i64> = layout.offsets.windows(2).map(|w| (w[1] - w[0]) as i64).collect();
    let split = cx.b.const_i64(&sizes);
    let outs: Vec<String> = layout.names.iter().map(|n| format!("{n}:flat")).collect();
    let refs: Vec<&str> = outs.iter().map(String::as_str).collect();
    cx.b.node("Split", "params/split", &[names::PARAMS, &split], &refs, vec![]);
}

/// The gradients concatenated in the layout's order (zeros where the loss does not reach).
fn flat_grads(cx: &mut Lowerer<'_>, layout: &FlatLayout, grads: Vec<Option<String>>, out: &str) -> String {
    let flat_shape = cx.b.const_i64(&[-1]);
    let parts: Vec<String> = grads
        .into_iter()
        .enumerate()
        .map(|(i, g)| {
            let numel = layout.offsets[i + 1] - layout.offsets[i];
            match g {
                Some(g) => {
                    let f = format!("{}/grad:flat", layout.names[i]);
                    cx.b.node("Reshape", &f, &[&g, &flat_shape], &[&f], vec![]);
                    f
                }
                None => cx.b.const_f32(&format!("zeros{numel}"), &[numel], &vec![0.0; numel]),
            }
        })
        .collect();
    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    emit(cx, "Concat", out.to_string(), &refs, vec![attribute("axis", Attr::Int(0))])
}

fn dim_fixed(v: usize) -> dimension::Value {
    dimension::Value::DimValue(v as i64)
}

fn dim_n() -> dimension::Value {
    dimension::Value::DimParam("N".into())
}

fn image_dims(graph: &Graph) -> Vec<dimension::Value> {
    let (c, h, w) = graph.input_shape().as_image().expect("checked image");
    vec![dim_n(), dim_fixed(c), dim_fixed(h), dim_fixed(w)]
}

/// x0, noise, t (and y): the batch's inputs.
fn batch_inputs(graph: &Graph) -> Vec<ValueInfoProto> {
    let mut v = vec![
        value_info(names::X0, DataType::Float, image_dims(graph)),
        value_info(names::NOISE, DataType::Float, image_dims(graph)),
        value_info(INPUT_T, DataType::Float, vec![dim_n()]),
    ];
    if graph.label.is_some() {
        v.push(value_info(INPUT_Y, DataType::Int64, vec![dim_n()]));
    }
    v
}

fn model(cx: Lowerer<'_>, input: Vec<ValueInfoProto>, output: Vec<ValueInfoProto>, doc: &str) -> ModelProto {
    let b = cx.b;
    ModelProto {
        ir_version: Some(IR_VERSION),
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(OPSET) }],
        producer_name: Some("mdc".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        doc_string: Some(doc.into()),
        graph: Some(GraphProto {
            name: Some("train_step".into()),
            node: b.nodes,
            initializer: b.initializers,
            input,
            output,
            ..Default::default()
        }),
        ..Default::default()
    }
}
