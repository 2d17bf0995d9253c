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
    /// value name -> name of its `Shape` value, computed once per tensor.
    shapes: HashMap<String, String>,
}

impl<'p> Lowerer<'p> {
    pub fn new(params: HashMap<&'p str, &'p ArrayD<f32>>) -> Self {
        Lowerer { b: OnnxGraphBuilder::default(), params, shapes: HashMap::new() }
    }

    /// Adds the parameter `<node>.<param>` of the node called `node` as an initializer, reshaped
    /// to `dims` (same data).
    pub fn weight(&mut self, node: &str, param: &str, dims: &[usize]) -> String {
        let name = format!("{node}.{param}");
        let t =
            self.params.get(name.as_str()).unwrap_or_else(|| panic!("parameter {name} was checked to exist"));
        let data = t.as_standard_layout();
        self.b.initializer(tensor_f32(&name, dims, data.as_slice().expect("standard layout")));
        name
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
