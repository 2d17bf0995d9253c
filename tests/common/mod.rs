//! Helpers shared by the interpreter tests.

use mdc::graph::{Graph, GraphBuilder, NodeId, Op};

/// A graph `x [c, h, w]` -> body -> output; `body` gets the builder, x and t.
pub fn graph_of(
    c: usize,
    h: usize,
    w: usize,
    body: impl FnOnce(&mut GraphBuilder, NodeId, NodeId) -> NodeId,
) -> Graph {
    let mut b = GraphBuilder::new();
    let x = b.add("x", "x", Op::Input { channels: c, height: h, width: w }, &[]).unwrap();
    let t = b.add("t", "t", Op::Timestep, &[]).unwrap();
    let out = body(&mut b, x, t);
    b.finish(out)
}
