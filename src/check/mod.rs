//! From a parsed model file to a shape-checked primitive [`Graph`].
//!
//! The blocks form a petgraph (edges from producer to consumer); cycles are found with Tarjan's
//! SCC, then blocks are expanded in a topological order that keeps file order whenever the file
//! is already ordered, so the primitive graph's node order is the file's. A block that fails
//! leaves its output unknown and everything downstream is skipped quietly, so one mistake gives
//! one message, and independent mistakes all get theirs.
//!
//! One check is one [`Build`], whose steps live in one file each, in the order they run:
//! `wiring` (references, cycles, order), `expand` (blocks into primitives, with [`blocks`]),
//! `explain` (a primitive's [`ShapeError`](crate::ops::ShapeError) as a diagnostic), `output`
//! (the `[model] output` block), `advice` (why sizes do not line up) and `lints` (warnings, and
//! a condition that never reaches the output). [`table`] and [`dot`] present a checked graph.

// Diagnostics are built on the cold path only; boxing them would just add noise.
#![allow(clippy::result_large_err)]

mod advice;
pub mod blocks;
pub mod dot;
mod expand;
mod explain;
mod lints;
mod output;
pub mod table;
mod wiring;

use std::collections::HashMap;

use petgraph::graph::{DiGraph, NodeIndex};

use crate::dsl::{self, BlockDecl, Diagnostic, ModelFile};
use crate::graph::{Graph, NodeId, PrimitiveGraphBuilder, Shape};

pub use table::{BlockRow, Totals};

/// The outcome of checking one model file.
#[derive(Debug, Clone)]
pub struct Checked {
    pub file: Option<ModelFile>,
    /// The graph, when there were no errors.
    pub graph: Option<Graph>,
    /// The per-block table, when there were no errors.
    pub table: Vec<BlockRow>,
    /// Errors and warnings, in file order.
    pub diagnostics: Vec<Diagnostic>,
}

impl Checked {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Parses, builds and shape-checks `source`.
pub fn check(source: &str) -> Checked {
    let (file, mut diagnostics) = dsl::parse(source);
    let Some(file) = file else {
        return Checked { file: None, graph: None, table: Vec::new(), diagnostics };
    };
    let mut b = Build::new(&file);
    b.run();
    diagnostics.extend(b.diags);
    let has_errors = diagnostics.iter().any(Diagnostic::is_error);
    if !has_errors && b.output.is_none() {
        // Every path to "no output" reports its cause; this only guards against a silent one.
        diagnostics.push(
            Diagnostic::error("the model has no output", file.model_span.clone())
                .block("[model]")
                .field("output")
                .help("set `output` in [model] to the block that predicts the noise"),
        );
    }
    diagnostics.sort_by_key(|d| (d.span.start, d.severity));
    let has_errors = diagnostics.iter().any(Diagnostic::is_error);
    let graph = match (has_errors, b.output) {
        (false, Some(out)) => Some(b.builder.finish(out)),
        _ => None,
    };
    let table = graph.as_ref().map(|g| table::block_table(g, &b.kinds)).unwrap_or_default();
    Checked { file: Some(file), graph, table, diagnostics }
}

/// A vertex of the block graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Vertex {
    X,
    T,
    Time,
    /// The class labels of a conditional model.
    Y,
    Block(usize),
}

/// One check in progress: the block graph, the primitive graph built so far, what each vertex
/// became in it, and the diagnostics.
struct Build<'f> {
    file: &'f ModelFile,
    g: DiGraph<Vertex, ()>,
    by_name: HashMap<&'f str, NodeIndex>,
    builder: PrimitiveGraphBuilder,
    /// Each vertex's value in the primitive graph; `None` when unknown (an error upstream).
    value: Vec<Option<NodeId>>,
    /// Vertices that must not be expanded (bad reference, part of a cycle).
    broken: Vec<bool>,
    diags: Vec<Diagnostic>,
    /// Whether a reference to a missing block was reported (its note lists the unread blocks).
    unknown_reference_reported: bool,
    /// Blocks (or `[model]` for the output) whose inputs did not line up in height and width.
    spatial_mismatches: Vec<String>,
    /// Stride-1 convs that change the spatial size, described ("`init` turns 28x28 into 27x27 ...").
    resizing_convs: Vec<String>,
    output: Option<NodeId>,
    /// Per block, how often it halves the image size (negative: doubles it).
    halvings: Vec<i32>,
    /// Block name -> op kind for the table.
    kinds: HashMap<String, &'static str>,
}

// The vertices every model has, added first in this order (then one per block).
fn vertex_x() -> NodeIndex {
    NodeIndex::new(0)
}
fn vertex_t() -> NodeIndex {
    NodeIndex::new(1)
}
fn vertex_time() -> NodeIndex {
    NodeIndex::new(2)
}
fn vertex_y() -> NodeIndex {
    NodeIndex::new(3)
}
fn vertex_of_block(i: usize) -> NodeIndex {
    NodeIndex::new(4 + i)
}

impl<'f> Build<'f> {
    fn new(file: &'f ModelFile) -> Self {
        let mut g = DiGraph::new();
        g.add_node(Vertex::X);
        g.add_node(Vertex::T);
        g.add_node(Vertex::Time);
        g.add_node(Vertex::Y);
        let mut by_name = HashMap::from([("x", vertex_x()), ("t", vertex_t())]);
        if file.time_declared {
            by_name.insert("time", vertex_time());
        }
        if file.condition_declared {
            by_name.insert("y", vertex_y());
        }
        for (i, block) in file.blocks.iter().enumerate() {
            let v = g.add_node(Vertex::Block(i));
            by_name.insert(block.name.as_str(), v);
        }
        let n = g.node_count();
        let mut kinds = HashMap::from([
            ("x".to_string(), "input"),
            ("t".to_string(), "timestep"),
            ("time".to_string(), "time_mlp"),
            ("y".to_string(), "label"),
        ]);
        for block in &file.blocks {
            if let Some(k) = &block.kind {
                kinds.insert(block.name.clone(), k.value.name());
            }
        }
        Build {
            file,
            g,
            by_name,
            builder: PrimitiveGraphBuilder::new(),
            value: vec![None; n],
            broken: vec![false; n],
            diags: Vec::new(),
            unknown_reference_reported: false,
            spatial_mismatches: Vec::new(),
            resizing_convs: Vec::new(),
            output: None,
            halvings: file.blocks.iter().map(|b| b.op.as_ref().map_or(0, advice::halvings)).collect(),
            kinds,
        }
    }

    fn block(&self, v: NodeIndex) -> Option<&'f BlockDecl> {
        match self.g[v] {
            Vertex::Block(i) => Some(&self.file.blocks[i]),
            _ => None,
        }
    }

    fn name(&self, v: NodeIndex) -> &'f str {
        match self.g[v] {
            Vertex::X => "x",
            Vertex::T => "t",
            Vertex::Time => "time",
            Vertex::Y => "y",
            Vertex::Block(i) => &self.file.blocks[i].name,
        }
    }

    fn run(&mut self) {
        self.wire();
        self.find_cycles();
        let order = self.topological_order();
        for v in order {
            self.expand_vertex(v);
        }
        self.check_output();
        self.check_input_size();
        self.check_unused();
        self.check_condition_read();
    }

    /// Errors for a bad value inside this block.
    fn err(&self, block: &BlockDecl, field: &str, message: impl Into<String>) -> Diagnostic {
        Diagnostic::error(message, block.field_span(field)).block(block.name.clone()).field(field)
    }

    /// The shape of a value already in the graph.
    fn shape_of(&self, id: NodeId) -> &Shape {
        self.builder.shape(id)
    }
}
