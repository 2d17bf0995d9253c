//! Graphviz DOT of a checked model: one node per user block, one edge per value a block reads
//! from another, labelled with its shape.

use std::collections::HashSet;
use std::fmt::Write as _;

use super::table::{shape_text, BlockRow};
use crate::graph::Graph;

pub fn to_dot(graph: &Graph, rows: &[BlockRow], title: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "digraph {} {{", quote(title));
    out.push_str("  rankdir=TB;\n  node [shape=box, style=rounded, fontname=\"Helvetica\"];\n");
    out.push_str("  edge [fontname=\"Helvetica\", fontsize=10];\n");
    for r in rows {
        let mut lines = vec![escape(&r.block), escape(&r.op)];
        if r.params > 0 {
            lines.push(format!("{} params", super::table::group_digits(r.params as u64)));
        }
        let _ = writeln!(out, "  {} [label=\"{}\"];", quote(&r.block), lines.join("\\n"));
    }
    let mut seen = HashSet::new();
    for node in &graph.nodes {
        for &i in &node.inputs {
            let src = &graph.nodes[i];
            if src.block == node.block || !seen.insert((src.block.as_str(), node.block.as_str(), i)) {
                continue;
            }
            let _ = writeln!(
                out,
                "  {} -> {} [label=\"{}\"];",
                quote(&src.block),
                quote(&node.block),
                shape_text(&src.shape.0)
            );
        }
    }
    let out_block = &graph.nodes[graph.output].block;
    let _ = writeln!(out, "  \"predicted noise\" [shape=plaintext];");
    let _ = writeln!(
        out,
        "  {} -> \"predicted noise\" [label=\"{}\"];",
        quote(out_block),
        shape_text(&graph.output_shape().0)
    );
    out.push_str("}\n");
    out
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn quote(s: &str) -> String {
    format!("\"{}\"", escape(s))
}
