//! The network's forward and reverse-mode backward as ONNX nodes: the forward as the exporter
//! lowers it (weights read from graph values instead of initializers), then every live node's
//! backward lowering in reverse topological order, gradients arriving at a value from several
//! readers added up with one `Sum`.

use std::collections::{HashMap, HashSet};

use crate::graph::{Graph, NodeId, Shape};
use crate::onnx::{lower_live_nodes, value_names};
use crate::onnx_ir::lower::Lowerer;
use crate::ops::GradValues;

/// The lowered forward: each node's value name and the nodes the output depends on.
pub(crate) struct Forward {
    pub names: Vec<String>,
    pub live: HashSet<NodeId>,
}

impl Forward {
    /// The value holding the network's prediction.
    pub fn prediction<'a>(&'a self, graph: &Graph) -> &'a str {
        &self.names[graph.output]
    }
}

/// Lowers the forward of `graph` reading the images from the value `x` (and `t`, `y` by their
/// signature names).
pub(crate) fn forward(cx: &mut Lowerer<'_>, graph: &Graph, x: &str) -> Forward {
    let mut names = value_names(graph);
    names[graph.input] = x.to_string();
    let live = lower_live_nodes(cx, graph, &mut names, "");
    Forward { names, live }
}

fn is_graph_input(graph: &Graph, id: NodeId) -> bool {
    id == graph.input || id == graph.timestep || Some(id) == graph.label
}

/// The values holding the gradients: for every parameter of `graph` in [`Graph::params`] order,
/// its gradient in the parameter's shape, or None where the loss does not depend on it; and the
/// images' gradient when asked for (None also where nothing reaches them).
pub(crate) struct Gradients {
    pub params: Vec<Option<String>>,
    pub input: Option<String>,
}

/// Lowers the backward of the forward `fwd` from `dy`, the gradient of the prediction, and with
/// `input_grad` the gradient of the image input too.
pub(crate) fn backward(
    cx: &mut Lowerer<'_>,
    graph: &Graph,
    fwd: &Forward,
    dy: &str,
    input_grad: bool,
) -> Gradients {
    let needs = needs_grad(graph, &fwd.live, input_grad);
    let mut arriving: HashMap<NodeId, Vec<String>> = HashMap::new();
    arriving.insert(graph.output, vec![dy.to_string()]);
    let mut by_node: Vec<Vec<String>> = vec![Vec::new(); graph.nodes.len()];
    for id in (0..graph.nodes.len()).rev() {
        let node = &graph.nodes[id];
        if !fwd.live.contains(&id) || is_graph_input(graph, id) || !needs[id] {
            continue;
        }
        let Some(parts) = arriving.remove(&id) else { continue };
        let dy = sum(cx, &node.name, parts);
        let ins: Vec<&str> = node.inputs.iter().map(|&i| fwd.names[i].as_str()).collect();
        let input_shapes: Vec<&Shape> = node.inputs.iter().map(|&i| &graph.nodes[i].shape).collect();
        let wants: Vec<bool> = node.inputs.iter().map(|&i| needs[i]).collect();
        let at = GradValues {
            ins: &ins,
            out: &fwd.names[id],
            input_shapes: &input_shapes,
            shape: &node.shape,
            dy: &dy,
            wants: &wants,
        };
        let grads = node.op.lower_backward(cx, &node.name, &at);
        for (k, g) in grads.inputs {
            arriving.entry(node.inputs[k]).or_default().push(g);
        }
        by_node[id] = grads.params;
    }
    let input = arriving.remove(&graph.input).map(|parts| sum(cx, &graph.nodes[graph.input].name, parts));
    let params = graph
        .nodes
        .iter()
        .zip(by_node)
        .flat_map(|(node, grads)| {
            let count = node.op.params().len();
            let mut grads = grads.into_iter();
            (0..count).map(move |_| grads.next())
        })
        .collect();
    Gradients { params, input }
}

/// Whether each node's value needs a gradient: it has parameters, or reads a value that does.
/// With `input_grad`, the image input counts as needing one.
fn needs_grad(graph: &Graph, live: &HashSet<NodeId>, input_grad: bool) -> Vec<bool> {
    let mut needs = vec![false; graph.nodes.len()];
    for (id, node) in graph.nodes.iter().enumerate() {
        needs[id] = if is_graph_input(graph, id) {
            input_grad && id == graph.input
        } else {
            live.contains(&id) && (node.op.param_count() > 0 || node.inputs.iter().any(|&i| needs[i]))
        };
    }
    needs
}

/// The sum of the gradients arriving at node `name`'s value (one needs no node).
fn sum(cx: &mut Lowerer<'_>, name: &str, mut parts: Vec<String>) -> String {
    if parts.len() == 1 {
        return parts.pop().expect("one part");
    }
    let out = format!("{name}/grad/sum");
    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    cx.b.node("Sum", &out, &refs, &[&out], vec![]);
    out
}
