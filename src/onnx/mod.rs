//! Export of a checked primitive [`Graph`] and its weights as one self-contained ONNX model.
//!
//! Signature: inputs `x` float32 [N, C, H, W], `t` float32 [N] and, for a class-conditional
//! model, `y` int64 [N]; output `eps` (predicted noise); N, H and W dynamic. The timestep embedding is part of the graph; weights are initializers
//! named like the parameters (`down1.conv.weight`); ONNX node names are the primitive node
//! names. IR version 10 and opset 17, which onnxruntime 1.18 and newer (1.31 included) run.

pub(crate) mod builder;
pub mod digest;
pub(crate) mod lower;
pub mod metadata;
#[allow(clippy::all, clippy::pedantic, missing_docs)]
#[rustfmt::skip]
pub mod proto;

use std::collections::HashSet;
use std::path::Path;

use prost::Message;

use crate::graph::{Graph, NodeId, Shape};
use crate::params::Params;
pub use metadata::{ClassInfo, ModelInfo, ScheduleInfo};
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

/// Why a model could not be exported.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("the weights do not fit the model:\n{}", .0.join("\n"))]
    WeightsMismatch(Vec<String>),
    #[error("the model's input must be an image [N, C, H, W], found {0}")]
    InputNotImage(Shape),
    #[error("{0}")]
    Schedule(String),
    #[error("cannot write {path}: {source}")]
    Write { path: String, source: std::io::Error },
}

/// Builds the ONNX model for `graph` with `params` (checked against the graph first).
pub fn export(graph: &Graph, params: &Params, info: &ModelInfo) -> Result<ModelProto, ExportError> {
    check_params(graph, params)?;
    let props = info.to_props().map_err(ExportError::Schedule)?;
    let (c, _, _) = graph
        .input_shape()
        .as_image()
        .ok_or_else(|| ExportError::InputNotImage(graph.input_shape().clone()))?;

    let value_names = value_names(graph);
    let live = live_nodes(graph);
    let mut lowerer = lower::Lowerer::new(params.by_name().into_iter().collect());
    for (id, node) in graph.nodes.iter().enumerate() {
        // The graph's inputs lower to nothing: they are declared below.
        if !live.contains(&id) {
            continue;
        }
        let ins: Vec<&str> = node.inputs.iter().map(|&i| value_names[i].as_str()).collect();
        lowerer.lower(node, &ins, &value_names[id]);
    }
    let mut b = lowerer.b;
    // A graph whose output is an input (an identity model) still needs a node producing `y`.
    if value_names[graph.output] != OUTPUT_EPS {
        b.node("Identity", OUTPUT_EPS, &[&value_names[graph.output]], &[OUTPUT_EPS], vec![]);
    }

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
    let graph_proto = proto::GraphProto {
        name: Some(info.model_file.clone()),
        node: b.nodes,
        initializer: b.initializers,
        input: inputs,
        output: vec![value_info(OUTPUT_EPS, DataType::Float, y_dims)],
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
            metadata::OUTPUT_DESCRIPTION
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

/// Exports and writes the model to `path` atomically.
pub fn export_to_file(
    graph: &Graph,
    params: &Params,
    info: &ModelInfo,
    path: &Path,
) -> Result<usize, ExportError> {
    let bytes = encode(&export(graph, params, info)?);
    crate::fsutil::write_atomic(path, &bytes)
        .map_err(|source| ExportError::Write { path: path.display().to_string(), source })?;
    Ok(bytes.len())
}

fn value_info(name: &str, elem_type: DataType, dims: Vec<dimension::Value>) -> ValueInfoProto {
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

/// The ONNX value each node produces: `x`, `t`, `y` for the signature, the node name otherwise
/// (suffixed if a node happens to be called like a signature name).
fn value_names(graph: &Graph) -> Vec<String> {
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
            } else if [INPUT_X, INPUT_T, INPUT_Y, OUTPUT_EPS].contains(&n.name.as_str()) {
                format!("{}:value", n.name)
            } else {
                n.name.clone()
            }
        })
        .collect()
}

/// Nodes the output depends on; the rest (and their weights) are left out of the export.
fn live_nodes(graph: &Graph) -> HashSet<NodeId> {
    let mut live = HashSet::new();
    let mut stack = vec![graph.output];
    while let Some(id) = stack.pop() {
        if live.insert(id) {
            stack.extend(&graph.nodes[id].inputs);
        }
    }
    live
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
