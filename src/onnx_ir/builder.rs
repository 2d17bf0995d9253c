//! A small helper for assembling an ONNX graph: nodes with attributes, weight initializers and
//! deduplicated constants.

use std::collections::HashMap;

use super::proto::{
    attribute_proto::AttributeType, tensor_proto::DataType, AttributeProto, NodeProto, TensorProto,
};

/// An attribute value, written as the matching `AttributeProto` field.
pub enum Attr<'a> {
    Int(i64),
    Ints(&'a [i64]),
    Float(f32),
    Str(&'a str),
}

pub fn attribute(name: &str, value: Attr<'_>) -> AttributeProto {
    let mut a = AttributeProto { name: Some(name.to_string()), ..Default::default() };
    match value {
        Attr::Int(v) => {
            a.i = Some(v);
            a.r#type = Some(AttributeType::Int as i32);
        }
        Attr::Ints(v) => {
            a.ints = v.to_vec();
            a.r#type = Some(AttributeType::Ints as i32);
        }
        Attr::Float(v) => {
            a.f = Some(v);
            a.r#type = Some(AttributeType::Float as i32);
        }
        Attr::Str(v) => {
            a.s = Some(v.as_bytes().to_vec());
            a.r#type = Some(AttributeType::String as i32);
        }
    }
    a
}

/// A tensor stored as little-endian raw bytes (the compact form onnxruntime loads fastest).
pub fn tensor_f32(name: &str, dims: &[usize], data: &[f32]) -> TensorProto {
    debug_assert_eq!(dims.iter().product::<usize>(), data.len());
    TensorProto {
        name: Some(name.to_string()),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: Some(DataType::Float as i32),
        raw_data: Some(bytemuck::cast_slice::<f32, u8>(data).to_vec()),
        ..Default::default()
    }
}

fn tensor_raw(name: &str, dims: &[usize], data_type: DataType, raw: Vec<u8>) -> TensorProto {
    TensorProto {
        name: Some(name.to_string()),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: Some(data_type as i32),
        raw_data: Some(raw),
        ..Default::default()
    }
}

/// Collects nodes and initializers in the order they are added (which keeps the graph
/// topologically sorted, as ONNX requires).
#[derive(Default)]
pub struct OnnxGraphBuilder {
    pub nodes: Vec<NodeProto>,
    pub initializers: Vec<TensorProto>,
    /// Content key -> initializer name, so each distinct constant is stored once.
    constants: HashMap<String, String>,
}

impl OnnxGraphBuilder {
    pub fn node(
        &mut self,
        op_type: &str,
        name: &str,
        inputs: &[&str],
        outputs: &[&str],
        attrs: Vec<AttributeProto>,
    ) {
        self.nodes.push(NodeProto {
            op_type: Some(op_type.to_string()),
            name: Some(name.to_string()),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            attribute: attrs,
            ..Default::default()
        });
    }

    pub fn initializer(&mut self, t: TensorProto) {
        self.initializers.push(t);
    }

    fn constant(&mut self, key: String, make: impl FnOnce(&str) -> TensorProto) -> String {
        if let Some(name) = self.constants.get(&key) {
            return name.clone();
        }
        let name = format!("const.{}", key);
        self.initializers.push(make(&name));
        self.constants.insert(key, name.clone());
        name
    }

    /// A 1-D int64 constant (shapes, axes, split sizes).
    pub fn const_i64(&mut self, values: &[i64]) -> String {
        let key = format!("i64{values:?}").replace(' ', "");
        let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.constant(key, |name| tensor_raw(name, &[values.len()], DataType::Int64, raw))
    }

    /// A float32 constant; `key` must identify its content (e.g. `ones8`), it also names it.
    pub fn const_f32(&mut self, key: &str, dims: &[usize], values: &[f32]) -> String {
        self.constant(key.to_string(), |name| tensor_f32(name, dims, values))
    }

    /// A float64 constant (where f32 rounding would cost accuracy, e.g. sinusoid arguments);
    /// `key` must identify its content.
    pub fn const_f64(&mut self, key: &str, dims: &[usize], values: &[f64]) -> String {
        let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.constant(key.to_string(), |name| tensor_raw(name, dims, DataType::Double, raw))
    }
}
