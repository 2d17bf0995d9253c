//! Export of a checked primitive [`Graph`] and its weights as one self-contained ONNX model.
//!
//! Signature: inputs `x` float32 [N, C, H, W], `t` float32 [N] and, for a class-conditional
//! model, `y` int64 [N]; output `eps` (predicted noise); N, H and W dynamic. The timestep embedding is part of the graph; weights are initializers
//! named like the parameters (`down1.conv.weight`); ONNX node names are the primitive node
//! names. IR version 10 and opset 17, which onnxruntime 1.18 and newer (1.31 included) run.

pub mod digest;
pub mod metadata;
mod model_info;

use std::collections::{HashMap, HashSet};
use std::path::Path;

use prost::Message;

use crate::graph::{Graph, NodeId, Shape};
use crate::onnx_ir::{builder, lower, proto};
use crate::ops::label::Label;
use crate::params::Params;
pub use metadata::{AutoguidanceInfo, ClassInfo, ModelInfo, ScheduleInfo};
pub use model_info::file_name;
use proto::{
    tensor_proto::DataType, tensor_shape_proto::dimension, type_proto, ModelProto, OperatorSetIdProto,
    StringStringEntryProto, TensorShapeProto, TypeProto, ValueInfoProto,
};

/// ONNX IR version written (onnxruntime 1.31 rejects IR 14; 10 is ONNX 1.16+).
pub const IR_VERSION: i64 = 10;
/// Default-domain opset: every op used exists in this form since opset 13, and onnxruntime's graph
/// fusions are written against these op versions.
pub const OPSET: i64 = 17;

/// Names of the graph's inputs and output. `y` is the class label input of a conditional model;
/// files exported before conditional models called the output `y` ([`LEGACY_OUTPUT`]).
pub const INPUT_X: &str = "x";
pub const INPUT_T: &str = "t";
pub const INPUT_Y: &str = "y";
pub const OUTPUT_EPS: &str = "eps";
pub const LEGACY_OUTPUT: &str = "y";
/// The second output of an autoguided conditional export: the model's own prediction, without
/// the guide. Class guidance pushes along its labelled-minus-null difference
/// ([`crate::diffusion::ClassGuidance`]), which `eps` alone cannot give.
pub const OUTPUT_EPS_MODEL: &str = "eps_model";

/// Why a model could not be exported.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("the weights do not fit the model:\n{}", .0.join("\n"))]
    WeightsMismatch(Vec<String>),
    #[error("the model's input must be an image [N, C, H, W], found {0}")]
    InputNotImage(Shape),
    #[error("{0}")]
    Metadata(String),
    #[error("cannot write {path}: {source}")]
    Write { path: String, source: std::io::Error },
}

/// Builds the ONNX model for `graph` with `params` (checked against the graph first).
pub fn export(graph: &Graph, params: &Params, info: &ModelInfo) -> Result<ModelProto, ExportError> {
    export_guided(graph, params, None, info)
}

/// Prefix of the guide's values and weights in an autoguided export (`guide/enc1.conv1.weight`).
const GUIDE_PREFIX: &str = "guide/";

/// [`export`], with autoguidance built in when `guide` holds the guide's weights: both networks
/// read the same `x`, `t` (and `y`), and the output is guide + w (model - guide), w from
/// `info.autoguidance` (1, the model alone, for an image without a class label where t is above
/// its `max_t`), so any client samples
/// the guided model with one call. A conditional model also outputs the model's own prediction
/// ([`OUTPUT_EPS_MODEL`]) for class guidance.
pub fn export_guided(
    graph: &Graph,
    params: &Params,
    guide: Option<&Params>,
    info: &ModelInfo,
) -> Result<ModelProto, ExportError> {
    check_params(graph, params)?;
    let guided = match (guide, &info.autoguidance) {
        (Some(g), Some(a)) => {
            check_params(graph, g)?;
            Some((g, a.steering))
        }
        (None, None) => None,
        (Some(_), None) | (None, Some(_)) => {
            return Err(ExportError::Metadata(
                "an autoguided export needs both the guide's weights and its weight w in the metadata".into(),
            ))
        }
    };
    let props = info.to_props().map_err(ExportError::Metadata)?;
    let (c, _, _) = graph
        .input_shape()
        .as_image()
        .ok_or_else(|| ExportError::InputNotImage(graph.input_shape().clone()))?;

    let mut weights: HashMap<String, &ndarray::ArrayD<f32>> =
        params.by_name().into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    if let Some((g, _)) = guided {
        weights.extend(g.by_name().into_iter().map(|(k, v)| (format!("{GUIDE_PREFIX}{k}"), v)));
    }
    let mut lowerer = lower::Lowerer::new(weights.iter().map(|(k, v)| (k.as_str(), *v)).collect());
    let model_out = if guided.is_some() { "eps/model" } else { OUTPUT_EPS };
    lower_graph(&mut lowerer, graph, "", model_out);
    if let Some((_, steering)) = guided {
        lower_graph(&mut lowerer, &renamed(graph, GUIDE_PREFIX), GUIDE_PREFIX, "eps/guide");
        let b = &mut lowerer.b;
        let w = steering.weight;
        let mut w = b.const_f32(&format!("autoguidance{w}"), &[], &[w]);
        if let Some(max_t) = steering.max_t {
            w = weight_up_to(b, &w, max_t, graph.label_input().map(|l| l.null()));
        }
        b.node("Sub", "autoguidance/diff", &["eps/model", "eps/guide"], &["autoguidance/diff"], vec![]);
        b.node("Mul", "autoguidance/scaled", &["autoguidance/diff", &w], &["autoguidance/scaled"], vec![]);
        b.node("Add", OUTPUT_EPS, &["eps/guide", "autoguidance/scaled"], &[OUTPUT_EPS], vec![]);
        if graph.label.is_some() {
            b.node("Identity", OUTPUT_EPS_MODEL, &["eps/model"], &[OUTPUT_EPS_MODEL], vec![]);
        }
    }
    let b = lowerer.b;

    let sym = |s: &str| dimension::Value::DimParam(s.to_string());
    let fixed = |v: usize| dimension::Value::DimValue(v as i64);
    let x_dims = vec![sym("N"), fixed(c), sym("H"), sym("W")];
    let (in_h, in_w) = graph.input_shape().as_image().map(|(_, h, w)| (h, w)).unwrap_or_default();
    let out_shape = graph.output_shape();
    let mut y_dims = vec![sym("N")];
    match out_shape.as_image() {
        // Same spatial size as the input: tie it to the input's H and W.
        Some((oc, oh, ow)) if (oh, ow) == (in_h, in_w) => y_dims.extend([fixed(oc), sym("H"), sym("W")]),
        _ => y_dims.extend(out_shape.0.iter().map(|&d| fixed(d))),
    }

    let mut inputs = vec![
        value_info(INPUT_X, DataType::Float, x_dims),
        value_info(INPUT_T, DataType::Float, vec![sym("N")]),
    ];
    if graph.label.is_some() {
        inputs.push(value_info(INPUT_Y, DataType::Int64, vec![sym("N")]));
    }
    let mut outputs = vec![value_info(OUTPUT_EPS, DataType::Float, y_dims.clone())];
    if guided.is_some() && graph.label.is_some() {
        outputs.push(value_info(OUTPUT_EPS_MODEL, DataType::Float, y_dims));
    }
    let graph_proto = proto::GraphProto {
        name: Some(info.model_file.clone()),
        node: b.nodes,
        initializer: b.initializers,
        input: inputs,
        output: outputs,
        ..Default::default()
    };
    let mut model = ModelProto {
        ir_version: Some(IR_VERSION),
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(OPSET) }],
        producer_name: Some("mdc".into()),
        producer_version: Some(info.mdc_version.clone()),
        doc_string: Some(format!(
            "Diffusion U-Net exported by mdc from {}. {}; {}.",
            info.model_file,
            info.inputs_description(),
            info.output_description()
        )),
        graph: Some(graph_proto),
        metadata_props: props
            .into_iter()
            .map(|(k, v)| StringStringEntryProto { key: Some(k), value: Some(v) })
            .collect(),
        ..Default::default()
    };
    digest::seal(&mut model);
    Ok(model)
}

/// The serialised model bytes.
pub fn encode(model: &ModelProto) -> Vec<u8> {
    model.encode_to_vec()
}

/// Exports (with the guide's weights built in when `guide` is given, see [`export_guided`]) and
/// writes the model to `path` atomically.
pub fn export_to_file(
    graph: &Graph,
    params: &Params,
    guide: Option<&Params>,
    info: &ModelInfo,
    path: &Path,
) -> Result<usize, ExportError> {
    let bytes = encode(&export_guided(graph, params, guide, info)?);
    crate::base::fsutil::write_atomic(path, &bytes)
        .map_err(|source| ExportError::Write { path: path.display().to_string(), source })?;
    Ok(bytes.len())
}

pub(crate) fn value_info(name: &str, elem_type: DataType, dims: Vec<dimension::Value>) -> ValueInfoProto {
    let shape = TensorShapeProto {
        dim: dims
            .into_iter()
            .map(|v| proto::tensor_shape_proto::Dimension { value: Some(v), ..Default::default() })
            .collect(),
    };
    ValueInfoProto {
        name: Some(name.to_string()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(elem_type as i32),
                shape: Some(shape),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Lowers the nodes `graph`'s output depends on, naming values as [`value_names`] (after
/// `prefix`) and the output `out`.
fn lower_graph(lowerer: &mut lower::Lowerer, graph: &Graph, prefix: &str, out: &str) {
    let mut names = value_names(graph);
    let output_source = names[graph.output].clone();
    for (id, name) in names.iter_mut().enumerate() {
        if ![graph.input, graph.timestep].contains(&id) && Some(id) != graph.label {
            *name = format!("{prefix}{name}");
        }
    }
    names[graph.output] = out.to_string();
    lower_live_nodes(lowerer, graph, &mut names, prefix);
    // A graph whose output is an input (an identity model) still needs a node producing it.
    if [graph.input, graph.timestep].contains(&graph.output) {
        lowerer.b.node("Identity", out, &[&output_source], &[out], vec![]);
    }
}

/// The labels the network reads: `y`, except the null label where `t < hide_below` (what the
/// interpreter feeds, see [`Label::shown`]). Returns the value's name.
fn hide_labels(lowerer: &mut lower::Lowerer, label: &Label, prefix: &str) -> String {
    let b = &mut lowerer.b;
    let below = b.const_f32(&format!("hide_below{}", label.hide_below), &[1], &[label.hide_below as f32]);
    let null = b.const_i64(&[label.null() as i64]);
    let hidden = format!("{prefix}y:hidden");
    let shown = format!("{prefix}y:shown");
    b.node("Less", &hidden, &[INPUT_T, &below], &[&hidden], vec![]);
    b.node("Where", &shown, &[&hidden, &null, INPUT_Y], &[&shown], vec![]);
    shown
}

/// Each image's autoguidance weight as [N, 1, 1, 1]: the scalar `w` where t <= `max_t` or the
/// image has a class label (`y` is not `null`, for a conditional model), 1 (the model alone)
/// elsewhere, as [`crate::diffusion::Steering::weight_at`] has it. Returns its name.
fn weight_up_to(b: &mut builder::OnnxGraphBuilder, w: &str, max_t: u64, null: Option<usize>) -> String {
    let max = b.const_f32(&format!("autoguidance_max_t{max_t}"), &[1], &[max_t as f32]);
    let alone = b.const_f32("autoguidance_model_alone", &[1], &[1.0]);
    let shape = b.const_i64(&[-1, 1, 1, 1]);
    let low_noise = "autoguidance/low_noise";
    b.node("LessOrEqual", low_noise, &[INPUT_T, &max], &[low_noise], vec![]);
    let steered = match null {
        None => low_noise,
        Some(null) => {
            let null = b.const_i64(&[null as i64]);
            b.node(
                "Equal",
                "autoguidance/unlabelled",
                &[INPUT_Y, &null],
                &["autoguidance/unlabelled"],
                vec![],
            );
            b.node(
                "Not",
                "autoguidance/labelled",
                &["autoguidance/unlabelled"],
                &["autoguidance/labelled"],
                vec![],
            );
            let either = [low_noise, "autoguidance/labelled"];
            b.node("Or", "autoguidance/steered", &either, &["autoguidance/steered"], vec![]);
            "autoguidance/steered"
        }
    };
    b.node("Where", "autoguidance/w_t", &[steered, w, &alone], &["autoguidance/w_t"], vec![]);
    b.node("Reshape", "autoguidance/w", &["autoguidance/w_t", &shape], &["autoguidance/w"], vec![]);
    "autoguidance/w".to_string()
}

/// `graph` with every node renamed `prefix` + name, so its weights are looked up under that
/// prefix and its ONNX nodes do not collide with the original's.
fn renamed(graph: &Graph, prefix: &str) -> Graph {
    let mut g = graph.clone();
    for n in &mut g.nodes {
        n.name = format!("{prefix}{}", n.name);
    }
    g
}

/// The ONNX value each node produces: `x`, `t`, `y` for the signature, the node name otherwise
/// (suffixed if a node happens to be called like a signature name).
pub(crate) fn value_names(graph: &Graph) -> Vec<String> {
    graph
        .nodes
        .iter()
        .enumerate()
        .map(|(id, n)| {
            if id == graph.input {
                INPUT_X.to_string()
            } else if id == graph.timestep {
                INPUT_T.to_string()
            } else if Some(id) == graph.label {
                INPUT_Y.to_string()
            } else if id == graph.output {
                OUTPUT_EPS.to_string()
            } else if [INPUT_X, INPUT_T, INPUT_Y, OUTPUT_EPS, OUTPUT_EPS_MODEL].contains(&n.name.as_str()) {
                format!("{}:value", n.name)
            } else {
                n.name.clone()
            }
        })
        .collect()
}

/// Emits every node the output depends on into its value in `names` (the graph's inputs lower
/// to nothing: the caller declares them), the labels' hiding first where the model hides them,
/// its value then taking `y`'s place in `names`. Returns the live nodes.
pub(crate) fn lower_live_nodes(
    lowerer: &mut lower::Lowerer,
    graph: &Graph,
    names: &mut [String],
    prefix: &str,
) -> HashSet<NodeId> {
    let live = live_nodes(graph);
    if let (Some(id), Some(label)) = (graph.label, graph.label_input()) {
        if label.hide_below > 0 && live.contains(&id) {
            names[id] = hide_labels(lowerer, label, prefix);
        }
    }
    for (id, node) in graph.nodes.iter().enumerate() {
        if !live.contains(&id) || [graph.input, graph.timestep].contains(&id) || Some(id) == graph.label {
            continue;
        }
        let ins: Vec<&str> = node.inputs.iter().map(|&i| names[i].as_str()).collect();
        node.op.lower_onnx(lowerer, &node.name, &ins, &names[id]);
    }
    live
}

/// Nodes the output depends on; the rest (and their weights) are left out of the export.
pub(crate) fn live_nodes(graph: &Graph) -> HashSet<NodeId> {
    graph.live_nodes()
}

fn check_params(graph: &Graph, params: &Params) -> Result<(), ExportError> {
    let by_name = params.by_name();
    let mut problems = Vec::new();
    for (name, spec) in graph.params() {
        match by_name.get(name.as_str()) {
            None => problems.push(format!("  missing tensor `{name}` (expected f32 {:?})", spec.shape)),
            Some(t) if t.shape() != spec.shape.as_slice() => {
                problems.push(format!("  `{name}`: expected shape {:?}, found {:?}", spec.shape, t.shape()))
            }
            Some(_) => {}
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ExportError::WeightsMismatch(problems))
    }
}
