//! What an op's ONNX lowering works with: the graph being assembled, the weights, and the
//! `Shape` values already computed. Each op's own lowering is in its module under
//! `crate::ops` (`PrimitiveOp::lower_onnx`), which calls it with the node's name: this layer
//! knows nothing of graphs.
//!
//! Forms are chosen for onnxruntime's CPU speed, and every shape that depends on the batch or
//! the image size is taken from the tensor at run time, so N, H and W stay dynamic. The ONNX
//! node carrying an op's result is named exactly like the primitive node (`down1.conv`); helper
//! nodes get `<node>/<step>`.

use std::collections::HashMap;

use ndarray::ArrayD;

use super::builder::{tensor_f32, OnnxGraphBuilder};

/// Lowers nodes one by one into a [`OnnxGraphBuilder`].
pub struct Lowerer<'p> {
    pub b: OnnxGraphBuilder,
    params: HashMap<&'p str, &'p ArrayD<f32>>,
    /// The weights are values of the graph (the training step slices them out of one input),
    /// not initializers: [`Self::weight`] reshapes the value `<node>.<param>:flat`.
    weights_are_values: bool,
    /// (weight, dims) -> the value holding that weight in those dims, when weights are values.
    reshaped: HashMap<(String, Vec<usize>), String>,
    /// value name -> name of its `Shape` value, computed once per tensor.
    shapes: HashMap<String, String>,
}

impl<'p> Lowerer<'p> {
    pub fn new(params: HashMap<&'p str, &'p ArrayD<f32>>) -> Self {
        Lowerer {
            b: OnnxGraphBuilder::default(),
            params,
            weights_are_values: false,
            reshaped: HashMap::new(),
            shapes: HashMap::new(),
        }
    }

    /// A lowerer whose weights are graph values `<node>.<param>:flat` (1-D) that the caller
    /// produces, instead of initializers.
    pub fn with_weight_values() -> Self {
        Lowerer { weights_are_values: true, ..Self::new(HashMap::new()) }
    }

    /// Adds the parameter `<node>.<param>` of the node called `node` as an initializer, reshaped
    /// to `dims` (same data).
    pub fn weight(&mut self, node: &str, param: &str, dims: &[usize]) -> String {
        let name = format!("{node}.{param}");
        if self.weights_are_values {
            return self.reshaped_weight(name, dims);
        }
        let t =
            self.params.get(name.as_str()).unwrap_or_else(|| panic!("parameter {name} was checked to exist"));
        let data = t.as_standard_layout();
        self.b.initializer(tensor_f32(&name, dims, data.as_slice().expect("standard layout")));
        name
    }

    /// The weight value `name` in `dims`, reshaped from `<name>:flat` once per dims.
    fn reshaped_weight(&mut self, name: String, dims: &[usize]) -> String {
        let key = (name, dims.to_vec());
        if let Some(v) = self.reshaped.get(&key) {
            return v.clone();
        }
        let dims_i64: Vec<i64> = dims.iter().map(|&d| d as i64).collect();
        let shape = self.b.const_i64(&dims_i64);
        let dims_text: Vec<String> = dims.iter().map(usize::to_string).collect();
        let out = format!("{}:{}", key.0, dims_text.join("x"));
        let flat = format!("{}:flat", key.0);
        self.b.node("Reshape", &out, &[&flat, &shape], &[&out], vec![]);
        self.reshaped.insert(key, out.clone());
        out
    }

    /// The name of a value holding `value`'s shape (one `Shape` node per tensor).
    pub fn shape_of(&mut self, value: &str) -> String {
        if let Some(s) = self.shapes.get(value) {
            return s.clone();
        }
        let out = format!("{value}/shape");
        self.b.node("Shape", &out, &[value], &[&out], vec![]);
        self.shapes.insert(value.to_string(), out.clone());
        out
    }
}
