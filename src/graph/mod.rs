//! The primitive graph: what a checked model file becomes, and what the interpreter runs and
//! the exporter lowers. Nodes are stored in topological order (every input index is smaller
//! than the node's own), each producing one value, so consumers walk a plain slice.

pub use crate::base::Shape;
pub use crate::ops::{Init, Op, ParamSpec, ShapeError};

use crate::ops::label::Label;
use crate::ops::timestep::Timestep;

/// Index of a node in [`Graph::nodes`]; also names the value the node produces.
pub type NodeId = usize;

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Unique name; also the prefix of the node's parameters (`down1.conv1` -> `down1.conv1.weight`).
    pub name: String,
    /// The user's block this node was expanded from (`down1`); what messages name.
    pub block: String,
    pub op: Op,
    pub inputs: Vec<NodeId>,
    /// Output shape per image.
    pub shape: Shape,
}

impl Node {
    /// Full names and specs of this node's parameters, e.g. (`down1.conv1.weight`, spec).
    pub fn params(&self) -> Vec<(String, ParamSpec)> {
        self.op.params().into_iter().map(|p| (format!("{}.{}", self.name, p.name), p)).collect()
    }
}

/// A shape-checked primitive graph with one image input, one timestep input, for a
/// class-conditional model one label input, and one output.
#[derive(Debug, Clone, PartialEq)]
pub struct Graph {
    pub nodes: Vec<Node>,
    pub input: NodeId,
    pub timestep: NodeId,
    /// The class labels `y` of a conditional model.
    pub label: Option<NodeId>,
    pub output: NodeId,
}

impl Graph {
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id]
    }

    /// Shape of the image input `x` (per image).
    pub fn input_shape(&self) -> &Shape {
        &self.nodes[self.input].shape
    }

    pub fn output_shape(&self) -> &Shape {
        &self.nodes[self.output].shape
    }

    /// How many classes a conditional model knows (its null label is this number), or None for
    /// an unconditional model.
    pub fn classes(&self) -> Option<usize> {
        self.label_input().map(|l| l.classes)
    }

    /// The label input of a conditional model: its classes and the timesteps it is hidden at.
    pub fn label_input(&self) -> Option<&Label> {
        match &self.nodes[self.label?].op {
            Op::Label(l) => Some(l),
            _ => None,
        }
    }

    /// Every parameter of the model in a fixed order (node order, then weight before bias).
    pub fn params(&self) -> Vec<(String, ParamSpec)> {
        self.nodes.iter().flat_map(Node::params).collect()
    }

    pub fn param_count(&self) -> usize {
        self.nodes.iter().map(|n| n.op.param_count()).sum()
    }

    /// Forward FLOPs of one image through the whole graph.
    pub fn flops_per_image(&self) -> u64 {
        self.nodes.iter().map(|n| self.node_flops(n)).sum()
    }

    /// Forward FLOPs of one image through `node` (the checker refuses nodes whose count
    /// would not fit; a larger hand-built graph saturates).
    pub fn node_flops(&self, node: &Node) -> u64 {
        let ins: Vec<&Shape> = node.inputs.iter().map(|&i| &self.nodes[i].shape).collect();
        u64::try_from(node.op.flops(&ins, &node.shape)).unwrap_or(u64::MAX)
    }

    /// The nodes the output depends on (what an export computes; the rest is dead weight).
    pub fn live_nodes(&self) -> std::collections::HashSet<NodeId> {
        let mut live = std::collections::HashSet::new();
        let mut stack = vec![self.output];
        while let Some(id) = stack.pop() {
            if live.insert(id) {
                stack.extend(&self.nodes[id].inputs);
            }
        }
        live
    }

    /// For each node, the nodes that read its value (the reverse edges).
    pub fn consumers(&self) -> Vec<Vec<NodeId>> {
        let mut out = vec![Vec::new(); self.nodes.len()];
        for (id, n) in self.nodes.iter().enumerate() {
            for &i in &n.inputs {
                out[i].push(id);
            }
        }
        out
    }
}

/// A shape rule that failed while adding a node: which node, from which block, reading which
/// values, and the rule's typed error.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{node} (block `{block}`): {error}")]
pub struct NodeError {
    pub node: String,
    pub block: String,
    /// The node's inputs, so an error about input k can be traced to the value that fed it.
    pub inputs: Vec<NodeId>,
    /// Boxed: it carries shapes, and builders return this on every node's happy path too.
    pub error: Box<ShapeError>,
}

/// Builds a [`Graph`] node by node, inferring each shape as it goes. Used by the model-file
/// builder and directly by tests that need a small graph.
#[derive(Debug, Default)]
pub struct PrimitiveGraphBuilder {
    nodes: Vec<Node>,
    input: Option<NodeId>,
    timestep: Option<NodeId>,
    label: Option<NodeId>,
}

impl PrimitiveGraphBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a node after checking its shape rule. Inputs must already exist.
    pub fn add(
        &mut self,
        name: impl Into<String>,
        block: impl Into<String>,
        op: impl Into<Op>,
        inputs: &[NodeId],
    ) -> Result<NodeId, NodeError> {
        let name = name.into();
        let block = block.into();
        let op = op.into();
        let shapes: Vec<&Shape> = inputs.iter().map(|&i| &self.nodes[i].shape).collect();
        let shape = op.infer_shape(&shapes).map_err(|error| NodeError {
            node: name.clone(),
            block: block.clone(),
            inputs: inputs.to_vec(),
            error: Box::new(error),
        })?;
        let id = self.nodes.len();
        // The graph's inputs are remembered; no other op needs a place here.
        match op {
            Op::Input(_) => self.input = Some(id),
            Op::Timestep(_) => self.timestep = Some(id),
            Op::Label(_) => self.label = Some(id),
            _ => {}
        }
        self.nodes.push(Node { name, block, op, inputs: inputs.to_vec(), shape });
        Ok(id)
    }

    /// Nodes added so far.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn shape(&self, id: NodeId) -> &Shape {
        &self.nodes[id].shape
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id]
    }

    /// Finishes the graph with `output` as its result. Needs the input and timestep nodes
    /// (a graph that ignores `t` still gets a timestep input, so every model has the same signature).
    pub fn finish(mut self, output: NodeId) -> Graph {
        let input = self.input.expect("graph has an Input node");
        let timestep = match self.timestep {
            Some(t) => t,
            None => {
                let id = self.nodes.len();
                self.nodes.push(Node {
                    name: "t".into(),
                    block: "t".into(),
                    op: Op::Timestep(Timestep),
                    inputs: vec![],
                    shape: Shape::scalar(),
                });
                id
            }
        };
        Graph { nodes: self.nodes, input, timestep, label: self.label, output }
    }
}
