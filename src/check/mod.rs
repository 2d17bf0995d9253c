//! From a parsed model file to a shape-checked primitive [`Graph`].
//!
//! The blocks form a petgraph (edges from producer to consumer); cycles are found with Tarjan's
//! SCC, then blocks are expanded in a topological order that keeps file order whenever the file
//! is already ordered, so the primitive graph's node order is the file's. A block that fails
//! leaves its output unknown and everything downstream is skipped quietly, so one mistake gives
//! one message, and independent mistakes all get theirs.

// Diagnostics are built on the cold path only; boxing them would just add noise.
#![allow(clippy::result_large_err)]

pub mod dot;
pub mod table;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use petgraph::Direction;

use crate::dsl::diag::suggestion;
use crate::dsl::{self, BlockDecl, BlockOp, Diagnostic, ModelFile, OpKind, Val};
use crate::graph::{blocks, Graph, GraphBuilder, NodeError, NodeId, Shape};
use crate::ops::{
    Add, Concat, ConvTranspose2d, Embedding, Input, Label, Linear, Param, Rank, ShapeError, Silu, Timestep,
};

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

struct Build<'f> {
    file: &'f ModelFile,
    g: DiGraph<Vertex, ()>,
    by_name: HashMap<&'f str, NodeIndex>,
    builder: GraphBuilder,
    /// Each vertex's value in the primitive graph; `None` when unknown (an error upstream).
    value: Vec<Option<NodeId>>,
    /// Vertices that must not be expanded (bad reference, part of a cycle).
    broken: Vec<bool>,
    diags: Vec<Diagnostic>,
    /// Whether a reference to a missing block was reported (its note lists the unread blocks).
    unknown_reference_reported: bool,
    /// Whether some concat/add/output met mismatched spatial sizes.
    /// Blocks (or `[model]` for the output) whose inputs did not line up in height and width.
    spatial_mismatches: Vec<String>,
    /// Stride-1 convs that change the spatial size, described ("`init` turns 28x28 into 27x27 ...").
    resizing_convs: Vec<String>,
    output: Option<NodeId>,
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
            builder: GraphBuilder::new(),
            value: vec![None; n],
            broken: vec![false; n],
            diags: Vec::new(),
            unknown_reference_reported: false,
            spatial_mismatches: Vec::new(),
            resizing_convs: Vec::new(),
            output: None,
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

    /// Adds an edge for every reference; reports names that do not exist.
    fn wire(&mut self) {
        self.g.add_edge(vertex_t(), vertex_time(), ());
        let mut missing_time: Vec<(&BlockDecl, &Val<String>)> = Vec::new();
        let mut unknown: Vec<(&BlockDecl, &Val<String>, &str)> = Vec::new();
        let mut unconditional_labels: Vec<(&BlockDecl, &Val<String>, &str)> = Vec::new();
        for (i, block) in self.file.blocks.iter().enumerate() {
            let v = vertex_of_block(i);
            let refs = block.inputs.iter().map(|r| (r, "in")).chain(block.time.iter().map(|r| (r, "time")));
            for (r, field) in refs {
                match self.by_name.get(r.value.as_str()) {
                    Some(&src) => {
                        self.g.add_edge(src, v, ());
                    }
                    None if r.value == "y" => {
                        self.broken[v.index()] = true;
                        unconditional_labels.push((block, r, field));
                    }
                    None if r.value == "time" => {
                        self.broken[v.index()] = true;
                        if missing_time.last().is_none_or(|(b, _)| b.name != block.name) {
                            missing_time.push((block, r));
                        }
                    }
                    None => {
                        self.broken[v.index()] = true;
                        unknown.push((block, r, field));
                    }
                }
            }
        }
        if let Some(d) = self.missing_time(&missing_time) {
            self.diags.push(d);
        }
        for (block, r, field) in unconditional_labels {
            self.diags.push(
                Diagnostic::error("`y` is the class label, and this model has no [condition]", r.span.clone())
                    .block(block.name.clone())
                    .field(field)
                    .expected("a model with a [condition] section, or an input other than `y`")
                    .found("an unconditional model (no [condition])")
                    .help("declare the classes: `[condition]` with `classes = 10` (and optionally `drop`, how often training hides the label)"),
            );
        }
        // After wiring, blocks nothing reads are known: a renamed block is often one of them.
        let unread = self.unread_blocks();
        self.unknown_reference_reported = !unknown.is_empty();
        for (block, r, field) in unknown {
            let mut d = self.unknown_reference(block, r, field);
            if !unread.is_empty() {
                let names: Vec<String> = unread.iter().take(3).map(|n| format!("`{n}`")).collect();
                d = d.note(format!("blocks that nothing reads yet: {}", names.join(", ")));
            }
            self.diags.push(d);
        }
    }

    /// Blocks whose output no other block reads and that are not the model's output.
    fn unread_blocks(&self) -> Vec<&'f str> {
        let output = self.file.output.as_ref().map(|o| o.value.as_str());
        self.file
            .blocks
            .iter()
            .enumerate()
            .filter(|&(i, b)| {
                Some(b.name.as_str()) != output
                    && self.g.neighbors_directed(vertex_of_block(i), Direction::Outgoing).next().is_none()
            })
            .map(|(_, b)| b.name.as_str())
            .collect()
    }

    /// One error for all blocks that read `time` when there is no [time] section.
    fn missing_time(&self, readers: &[(&BlockDecl, &Val<String>)]) -> Option<Diagnostic> {
        let ((first, r), rest) = readers.split_first()?;
        let mut d = Diagnostic::error("the model has no timestep embedding", r.span.clone())
            .block(first.name.clone())
            .field("time")
            .expected("a [time] section (the sinusoidal embedding and MLP that `time` names)")
            .found("no [time] section")
            .help(
                "add `[time]` with `dim = 32` and `hidden = 128`: a diffusion model must know the timestep",
            );
        if !rest.is_empty() {
            let names: Vec<String> = rest.iter().map(|(b, _)| format!("`{}`", b.name)).collect();
            d = d.note(format!("{} also read `time`", names.join(", ")));
        }
        Some(d)
    }

    fn unknown_reference(&self, block: &BlockDecl, r: &Val<String>, field: &str) -> Diagnostic {
        let name = r.value.as_str();
        // A block cannot read itself, so its own name is never the answer.
        let mut names: Vec<&str> = self.by_name.keys().copied().filter(|&n| n != block.name).collect();
        names.sort_unstable();
        let help =
            well_known_input(name).or_else(|| suggestion(name, names.iter().copied())).unwrap_or_else(|| {
                "inputs name a block of [blocks], `x` (the image) or `time` (the time embedding)".to_string()
            });
        Diagnostic::error(format!("no block named `{name}`"), r.span.clone())
            .block(block.name.clone())
            .field(field)
            .expected("the name of a block, `x` or `time`")
            .found(format!("`{name}`"))
            .help(help)
    }

    fn find_cycles(&mut self) {
        for scc in petgraph::algo::tarjan_scc(&self.g) {
            let cyclic = scc.len() > 1 || self.g.find_edge(scc[0], scc[0]).is_some();
            if !cyclic {
                continue;
            }
            for &v in &scc {
                self.broken[v.index()] = true;
            }
            let start = *scc.iter().min().expect("non-empty");
            let path = self.cycle_path(start, &scc);
            let names: Vec<&str> = path.iter().map(|&v| self.name(v)).collect();
            let Some(block) = self.block(start) else { continue };
            self.diags.push(
                Diagnostic::error(
                    format!("blocks form a cycle: {} -> {}", names.join(" -> "), names[0]),
                    block.inputs_span.clone(),
                )
                .block(block.name.clone())
                .field("in")
                .expected("inputs computed before this block")
                .found(format!("`{}` depends on itself", block.name))
                .help("a block can only read blocks that do not read it back; re-wire one `in` of the loop"),
            );
        }
    }

    /// A path start -> ... -> (edge back to start) inside one strongly connected component.
    fn cycle_path(&self, start: NodeIndex, scc: &[NodeIndex]) -> Vec<NodeIndex> {
        let mut parent: HashMap<NodeIndex, NodeIndex> = HashMap::new();
        let mut queue = std::collections::VecDeque::from([start]);
        while let Some(v) = queue.pop_front() {
            for e in self.g.edges_directed(v, Direction::Outgoing) {
                let w = e.target();
                if w == start {
                    let mut path = vec![v];
                    let mut cur = v;
                    while cur != start {
                        cur = parent[&cur];
                        path.push(cur);
                    }
                    path.reverse();
                    return path;
                }
                if scc.contains(&w) && !parent.contains_key(&w) {
                    parent.insert(w, v);
                    queue.push_back(w);
                }
            }
        }
        vec![start]
    }

    /// Kahn's algorithm, always taking the earliest ready vertex: x, t, time, then blocks in
    /// file order unless a block reads one written below it. Cycle members never become ready.
    fn topological_order(&self) -> Vec<NodeIndex> {
        let mut indegree: Vec<usize> =
            self.g.node_indices().map(|v| self.g.edges_directed(v, Direction::Incoming).count()).collect();
        let mut ready: BinaryHeap<Reverse<NodeIndex>> =
            self.g.node_indices().filter(|v| indegree[v.index()] == 0).map(Reverse).collect();
        let mut order = Vec::with_capacity(self.g.node_count());
        while let Some(Reverse(v)) = ready.pop() {
            order.push(v);
            for w in self.g.neighbors_directed(v, Direction::Outgoing) {
                indegree[w.index()] -= 1;
                if indegree[w.index()] == 0 {
                    ready.push(Reverse(w));
                }
            }
        }
        order
    }

    fn expand_vertex(&mut self, v: NodeIndex) {
        let id = match self.g[v] {
            Vertex::X => self.file.input.as_ref().and_then(|input| {
                let op = Input {
                    channels: input.channels.value,
                    height: input.height.value,
                    width: input.width.value,
                };
                self.builder.add("x", "x", op, &[]).ok()
            }),
            Vertex::T => self.builder.add("t", "t", Timestep, &[]).ok(),
            Vertex::Time => self.expand_time(),
            Vertex::Y => {
                let label = self
                    .file
                    .condition
                    .as_ref()
                    .map(|c| Label { classes: c.classes.value, hide_below: c.hide_below.value });
                label.and_then(|label| self.builder.add("y", "y", label, &[]).ok())
            }
            Vertex::Block(i) => {
                let block = &self.file.blocks[i];
                if self.broken[v.index()] {
                    None
                } else {
                    let ins: Option<Vec<NodeId>> = block
                        .inputs
                        .iter()
                        .map(|r| self.value[self.by_name[r.value.as_str()].index()])
                        .collect();
                    let temb =
                        block.time.as_ref().map(|r| self.value[self.by_name[r.value.as_str()].index()]);
                    match (&block.op, ins, temb) {
                        (Some(op), Some(ins), None | Some(Some(_))) => {
                            let first_new = self.builder.len();
                            match self.expand_block(block, op, &ins, temb.flatten()) {
                                Ok(id) => match self.within_limits(first_new) {
                                    Ok(()) => Some(id),
                                    Err(msg) => {
                                        self.diags.push(
                                            Diagnostic::error(msg, block.name_span.clone())
                                                .block(block.name.clone())
                                                .help("mdc checks models up to 2^31 values per activation and 2^50 FLOPs per node; use smaller sizes"),
                                        );
                                        None
                                    }
                                },
                                Err(d) => {
                                    self.diags.push(d);
                                    None
                                }
                            }
                        }
                        _ => None,
                    }
                }
            }
        };
        self.value[v.index()] = id;
    }

    fn expand_time(&mut self) -> Option<NodeId> {
        let time = self.file.time.as_ref()?;
        let t = self.value[vertex_t().index()]?;
        match blocks::time_mlp(&mut self.builder, "time", t, time.dim.value, time.hidden.value) {
            Ok(id) => Some(id),
            Err(e) => {
                let d = match *e.error {
                    ShapeError::OutOfRange { param: Param::Dim, value, expected } => Diagnostic::error(
                        "the sinusoidal embedding needs an even dimension",
                        time.dim.span.clone(),
                    )
                    .field("dim")
                    .expected(expected)
                    .found(value.to_string())
                    .help(format!("use {} or {}", value - 1, value + 1).replace("use 0 or", "use")),
                    other => Diagnostic::error(other.to_string(), time.span.clone()),
                };
                self.diags.push(d.block("[time]"));
                None
            }
        }
    }

    /// Errors for a bad value inside this block.
    fn err(&self, block: &BlockDecl, field: &str, message: impl Into<String>) -> Diagnostic {
        Diagnostic::error(message, block.field_span(field)).block(block.name.clone()).field(field)
    }

    /// The shape of a value already in the graph.
    fn shape_of(&self, id: NodeId) -> &Shape {
        self.builder.shape(id)
    }

    /// Expands the block into primitive nodes. The primitives' own shape rules decide what is
    /// valid; a rule's typed error is turned into a diagnostic by [`Self::shape_error`].
    fn expand_block(
        &mut self,
        block: &BlockDecl,
        op: &BlockOp,
        ins: &[NodeId],
        temb: Option<NodeId>,
    ) -> Result<NodeId, Diagnostic> {
        let name = block.name.as_str();
        let b = &mut self.builder;
        let result = match op {
            BlockOp::Conv { channels, kernel, stride, padding } => {
                let (k, s, p) = (kernel.value, stride.value, padding.value);
                let id = blocks::conv(b, name, name, ins[0], channels.value, k, s, p);
                if let Ok(id) = id {
                    self.note_resizing_conv(name, ins[0], id, k, s, p);
                }
                id
            }
            BlockOp::ConvTranspose { channels, kernel, stride, padding } => {
                // An input that is not an image is refused by the op's own rule.
                let in_channels = b.shape(ins[0]).channels().unwrap_or(0);
                let (out_channels, kernel, stride, padding) =
                    (channels.value, kernel.value, stride.value, padding.value);
                let op = ConvTranspose2d { in_channels, out_channels, kernel, stride, padding };
                b.add(name, name, op, &[ins[0]])
            }
            BlockOp::GroupNorm { groups } => blocks::group_norm(b, name, name, ins[0], groups.value),
            BlockOp::Silu => b.add(name, name, Silu, &[ins[0]]),
            BlockOp::Linear { features } => {
                // An input that is not a vector is refused by the linear's own rule.
                let in_features = b.shape(ins[0]).as_vector().unwrap_or(0);
                b.add(name, name, Linear { in_features, out_features: features.value }, &[ins[0]])
            }
            BlockOp::Resblock { channels, groups, film } => {
                let temb = temb.expect("resblocks always read a time embedding");
                blocks::resblock(b, name, ins[0], temb, channels.value, groups.value, film.value == 1)
            }
            BlockOp::Downsample => blocks::downsample(b, name, ins[0]),
            BlockOp::Upsample => blocks::upsample(b, name, ins[0]),
            BlockOp::Attention { heads, groups } => {
                blocks::attention(b, name, ins[0], heads.value, groups.value)
            }
            BlockOp::Concat => b.add(name, name, Concat, ins),
            BlockOp::Add => b.add(name, name, Add, ins),
            BlockOp::Embedding { features } => {
                // Only labels index a table: a timestep or a feature value would be a float.
                let label = self.value[vertex_y().index()];
                if label != Some(ins[0]) {
                    let r = &block.inputs[0];
                    return Err(Diagnostic::error(
                        format!("an embedding looks up the class label `y`, not `{}`", r.value),
                        r.span.clone(),
                    )
                    .block(name.to_string())
                    .field("in")
                    .expected("`in = \"y\"` (the class label of a model with [condition])")
                    .found(format!("`{}` of shape {}", r.value, self.shape_of(ins[0])))
                    .help("to condition on the timestep, resblocks read `time`; labels need `[condition]` and `in = \"y\"`"));
                }
                let classes = self.file.condition.as_ref().map_or(0, |c| c.classes.value);
                b.add(name, name, Embedding { rows: classes + 1, features: features.value }, &[ins[0]])
            }
        };
        result.map_err(|e| self.shape_error(block, op, ins, temb, e))
    }

    /// Remembers a stride-1 conv that changes the spatial size: the likely reason when sizes
    /// do not line up later.
    fn note_resizing_conv(&mut self, name: &str, x: NodeId, y: NodeId, k: usize, s: usize, p: usize) {
        let (Some((_, h, w)), Some((_, oh, ow))) = (self.shape_of(x).as_image(), self.shape_of(y).as_image())
        else {
            return;
        };
        if s == 1 && (h, w) != (oh, ow) {
            self.resizing_convs
                .push(format!("`{name}` turns {h}x{w} into {oh}x{ow} (kernel {k}, padding {p})"));
        }
    }

    /// Why spatial sizes do not line up, the most concrete cause first: a stride-1 conv that
    /// resizes; downsamples and upsamples that do not pair up; a skip taken from another level
    /// (`pair`: the main input of a concat or add, then the other one); else odd sizes that a
    /// downsample rounds up.
    fn size_help(&self, at: Option<&BlockDecl>, pair: Option<[(&str, NodeId); 2]>) -> String {
        if let Some(conv) = self.resizing_convs.first() {
            return format!("{conv}; a stride-1 conv keeps the size when padding = (kernel - 1) / 2");
        }
        let hw = |id: NodeId| match self.shape_of(id).as_image() {
            Some((_, h, w)) => format!("{h}x{w}"),
            None => self.shape_of(id).to_string(),
        };
        let sizes = pair
            .map(|[(main, m), (other, o)]| format!("`{other}` is at {} and `{main}` at {}", hw(o), hw(m)));
        let count = |kind: OpKind| {
            self.file.blocks.iter().filter(|b| b.kind.as_ref().is_some_and(|k| k.value == kind)).count()
        };
        let (downs, ups) = (count(OpKind::Downsample), count(OpKind::Upsample));
        if downs != ups {
            let fix = if downs < ups {
                "a downsample is missing on the way down (or an upsample is extra)"
            } else {
                "an upsample is missing on the way up (or a downsample is extra)"
            };
            let lead = sizes.map(|s| format!("{s}: ")).unwrap_or_default();
            return format!(
                "{lead}the model has {downs} downsample{} and {ups} upsample{}, so the decoder's levels do not \
                 meet the encoder's; {fix}",
                plural(downs),
                plural(ups)
            );
        }
        if let (Some(at), Some([(_, main), (_, other)]), Some(sizes)) = (at, pair, &sizes) {
            if let Some(skip) = self.skip_at_size_of(at, main, other) {
                return format!("{sizes}: did you mean the skip from `{skip}`, which is {}?", hw(main));
            }
        }
        "a downsample rounds an odd size up (7 -> 4) and the upsample doubles it (4 -> 8), \
         so the sizes no longer line up; check the input size and the number of downsamples"
            .to_string()
    }

    /// A block computed before `at` whose output has `main`'s height and width, to replace the
    /// input `other`: preferably of `other`'s kind (a resblock for a resblock's skip), then the
    /// closest channel count, then the first in the file.
    fn skip_at_size_of(&self, at: &BlockDecl, main: NodeId, other: NodeId) -> Option<&'f str> {
        let (_, h, w) = self.shape_of(main).as_image()?;
        let (oc, _, _) = self.shape_of(other).as_image()?;
        let other_kind = (0..self.file.blocks.len())
            .find(|&i| self.value[vertex_of_block(i).index()] == Some(other))
            .and_then(|i| self.file.blocks[i].kind.as_ref().map(|k| k.value));
        self.file
            .blocks
            .iter()
            .enumerate()
            .filter(|(_, b)| b.name != at.name)
            .filter_map(|(i, b)| {
                // blocks after `at` in the graph have no value yet
                let id = self.value[vertex_of_block(i).index()]?;
                let (c, bh, bw) = self.shape_of(id).as_image()?;
                (id != main && id != other && (bh, bw) == (h, w)).then_some((b, c))
            })
            .min_by_key(|(b, c)| (b.kind.as_ref().map(|k| k.value) != other_kind, c.abs_diff(oc)))
            .map(|(b, _)| b.name.as_str())
    }

    /// A primitive's shape rule that failed inside the block's expansion, reported at the
    /// user's block and the field the typed error points to: the `in` (or `time`) reference
    /// that fed the input at fault, or the parameter at fault.
    fn shape_error(
        &mut self,
        block: &BlockDecl,
        op: &BlockOp,
        ins: &[NodeId],
        temb: Option<NodeId>,
        e: NodeError,
    ) -> Diagnostic {
        // The reference that gave the failing node its input k, when it is one of the block's.
        // A value named by both `in` and `time` is blamed on `time` when a vector (a time
        // embedding) was expected, else on `in`.
        let source = |k: usize, time_first: bool| -> Option<(&'static str, &Val<String>)> {
            let v = *e.inputs.get(k)?;
            let time = block.time.as_ref().filter(|_| temb == Some(v)).map(|r| ("time", r));
            let input = ins.iter().position(|&i| i == v).map(|j| ("in", &block.inputs[j]));
            if time_first {
                time.or(input)
            } else {
                input.or(time)
            }
        };
        let at = |field: &str, r: &Val<String>, message: String| {
            Diagnostic::error(message, r.span.clone()).block(block.name.clone()).field(field)
        };
        let params = BlockParams::of(op);
        let d = match &*e.error {
            ShapeError::WrongRank { input, expected, found } => {
                match source(*input, *expected == Rank::Vector) {
                    Some((field, r)) => {
                        at(field, r, format!("`{}` does not produce {}", r.value, expected.noun()))
                            .expected(expected.described())
                            .found(found.to_string())
                    }
                    None => self.inside(block, &e),
                }
            }
            ShapeError::ChannelMismatch { input, expected, found } => match source(*input, false) {
                Some((field, r)) => at(field, r, format!("`{}` gives {found} channels", r.value))
                    .expected(format!("{expected} channels"))
                    .found(found.to_string()),
                None => self.inside(block, &e),
            },
            ShapeError::NotDivisible { param: Param::Groups, value, channels } => {
                let written = block.field_spans.iter().any(|(f, _)| f == "groups");
                // Unwritten groups come from [vars]: then point at what set the channel count.
                let field = if written {
                    "groups"
                } else if params.channels.is_some() {
                    "channels"
                } else {
                    "in"
                };
                let mut d = self
                    .err(block, field, e.error.to_string())
                    .expected(format!("a channel count divisible by {value} (GroupNorm groups)"))
                    .found(format!("{channels} channels"))
                    .help(format!(
                        "use a multiple of {value} channels ({}), or groups that divide {channels}: {}",
                        nearby_multiples(*channels, *value),
                        divisors(*channels)
                    ));
                for v in [params.groups, params.channels].into_iter().flatten() {
                    d = origin_label(d, v);
                }
                d
            }
            ShapeError::NotDivisible { param, value, channels } => {
                let mut d = self
                    .err(block, param.field(), e.error.to_string())
                    .expected(format!("a number of {} dividing {channels}", param.field()))
                    .found(value.to_string())
                    .help(format!("{} that divide {channels}: {}", param.field(), divisors(*channels)));
                if let Some(v) = params.heads {
                    d = origin_label(d, v);
                }
                d
            }
            ShapeError::OutOfRange { param, value, expected } => self
                .err(block, param.field(), e.error.to_string())
                .expected(*expected)
                .found(value.to_string()),
            ShapeError::EmptyOutput { kernel, padding, height, width } => self
                .err(block, "kernel", e.error.to_string())
                .expected(format!(
                    "a kernel of at most {} (the padded input size)",
                    height.min(width) + 2 * padding
                ))
                .found(kernel.to_string())
                .help("an empty output: use a smaller kernel or more padding"),
            ShapeError::SpatialMismatch { inputs: (a, b), .. } => {
                match (source(*a, false), source(*b, false)) {
                    (Some((_, ra)), Some((_, rb))) => {
                        let d = self.mismatch(block, ins, "concat inputs differ in spatial size");
                        let pair = [(ra.value.as_str(), e.inputs[*a]), (rb.value.as_str(), e.inputs[*b])];
                        self.spatial_mismatches.push(block.name.clone());
                        d.expected("inputs with equal height and width")
                            .help(self.size_help(Some(block), Some(pair)))
                    }
                    _ => self.inside(block, &e),
                }
            }
            ShapeError::ShapeMismatch { inputs: (a, b), found: (sa, sb) } => {
                match (source(*a, false), source(*b, false)) {
                    (Some((_, ra)), Some((_, rb))) => {
                        let d = self
                            .mismatch(block, ins, "add needs inputs of the same shape")
                            .expected("equal shapes");
                        if let Some(help) = self.embedding_width_help(block, ins) {
                            return d.help(help);
                        }
                        if sa.0.get(1..) == sb.0.get(1..) {
                            return d;
                        }
                        let pair = [(ra.value.as_str(), e.inputs[*a]), (rb.value.as_str(), e.inputs[*b])];
                        self.spatial_mismatches.push(block.name.clone());
                        d.help(self.size_help(Some(block), Some(pair)))
                    }
                    _ => self.inside(block, &e),
                }
            }
            ShapeError::Arity { .. } => self.err(block, "in", e.error.to_string()),
        };
        d
    }

    /// When an `add` joins an embedding and a vector of another width (the time embedding, most
    /// often): which width to give the embedding.
    fn embedding_width_help(&self, block: &BlockDecl, ins: &[NodeId]) -> Option<String> {
        let embedding = block
            .inputs
            .iter()
            .zip(ins)
            .find(|(_, &i)| matches!(self.builder.node(i).op, crate::graph::Op::Embedding(_)))?;
        let other = block.inputs.iter().zip(ins).find(|(r, _)| r.value != embedding.0.value)?;
        let width = self.shape_of(*other.1).as_vector()?;
        let via_time = if other.0.value == "time" { " (`\"time.hidden\"`)" } else { "" };
        Some(format!(
            "an embedding added to `{}` must be as wide: set `features = {width}`{via_time} in `{}`",
            other.0.value, embedding.0.value
        ))
    }

    /// A declared condition must reach the output, or training on labels teaches nothing.
    fn check_condition_read(&mut self) {
        let Some(cond) = &self.file.condition else { return };
        // An embedding that failed has its own error: the label not reaching the output follows from it.
        let failed_embedding = self.file.blocks.iter().enumerate().any(|(i, b)| {
            matches!(b.kind.as_ref().map(|k| k.value), Some(OpKind::Embedding))
                && self.value[vertex_of_block(i).index()].is_none()
        });
        if failed_embedding {
            return;
        }
        let classes = cond.classes.value;
        let readers = self.g.neighbors_directed(vertex_y(), Direction::Outgoing).count();
        let problem = if readers == 0 {
            format!("the model declares {classes} classes, but no block reads the label `y`")
        } else {
            // A reader with an error of its own has its message; without an output nothing reaches it.
            let (Some(label), Some(output)) = (self.value[vertex_y().index()], self.output) else { return };
            let mut reaches = vec![false; self.builder.len()];
            reaches[label] = true;
            for id in label + 1..self.builder.len() {
                reaches[id] = self.builder.node(id).inputs.iter().any(|&i| reaches[i]);
            }
            if reaches[output] {
                return;
            }
            // Where the label's path ends: those blocks' "never used" warnings are this error.
            let ends: Vec<&str> = self
                .unread_blocks()
                .into_iter()
                .filter(|b| {
                    (0..self.builder.len()).any(|id| reaches[id] && self.builder.node(id).block == *b)
                })
                .collect();
            self.diags.retain(|d| {
                !(d.severity == crate::dsl::Severity::Warning
                    && ends.iter().any(|b| d.block.as_deref() == Some(*b)))
            });
            let ends: Vec<String> = ends.iter().map(|b| format!("`{b}`")).collect();
            let end = match ends.as_slice() {
                [] => String::new(),
                _ => format!(": it stops at {}, which nothing reads", ends.join(", ")),
            };
            format!("the model declares {classes} classes, but the label `y` does not reach the output{end}")
        };
        self.diags.push(
            Diagnostic::error(problem, cond.span.clone())
                .block("[condition]")
                .expected("a path from `y` to the output: `y` -> embedding -> added to `time` -> the resblocks' `time`")
                .found("a condition the model ignores")
                .help("add `label = { op = \"embedding\", in = \"y\", features = \"time.hidden\" }` and \
                       `cond = { op = \"add\", in = [\"time\", \"label\"] }`, and set `time = \"cond\"` on the resblocks; \
                       or remove [condition] for an unconditional model"),
        );
    }

    /// Inputs that do not fit together, each named with its shape; the first input is the
    /// main path, the other of the pair the odd one out.
    fn mismatch(&self, block: &BlockDecl, ins: &[NodeId], message: &str) -> Diagnostic {
        let described: Vec<String> = block
            .inputs
            .iter()
            .zip(ins)
            .map(|(r, &i)| format!("`{}` gives {}", r.value, self.shape_of(i)))
            .collect();
        // Each input is also labelled in the source with the shape it gives.
        let d = self.err(block, "in", message).found(described.join(", "));
        block
            .inputs
            .iter()
            .zip(ins)
            .fold(d, |d, (r, &i)| d.label(r.span.clone(), self.shape_of(i).to_string()))
    }

    /// A rule that failed on a value made inside the block's own expansion (not one it reads).
    fn inside(&self, block: &BlockDecl, e: &NodeError) -> Diagnostic {
        Diagnostic::error(e.error.to_string(), block.name_span.clone()).block(block.name.clone()).note(
            format!(
                "while building `{}` as a `{}` (its node `{}`)",
                block.name,
                block.kind.as_ref().map_or("?", |k| k.value.name()),
                e.node
            ),
        )
    }

    /// Refuses sizes whose parameter, activation or FLOP counts would not fit the counters.
    fn within_limits(&self, first_new: usize) -> Result<(), String> {
        for id in first_new..self.builder.len() {
            let node = self.builder.node(id);
            let numel = checked_numel(&node.shape).filter(|&n| n <= 1 << 31);
            let params: Option<u128> = node
                .op
                .params()
                .iter()
                .map(|p| p.shape.iter().try_fold(1u128, |a, &d| a.checked_mul(d as u128)))
                .sum();
            let (Some(_), Some(params)) = (numel, params) else {
                return Err(format!("the output {} is too large", node.shape));
            };
            let ins: Vec<&Shape> = node.inputs.iter().map(|&i| self.builder.shape(i)).collect();
            if params > 1 << 34 || node.op.flops(&ins, &node.shape) > 1 << 50 {
                return Err(format!("the block is too large to count (output {})", node.shape));
            }
        }
        Ok(())
    }

    fn check_output(&mut self) {
        let Some(r) = &self.file.output else { return };
        let Some(&v) = self.by_name.get(r.value.as_str()) else {
            let mut names: Vec<&str> = self.file.blocks.iter().map(|b| b.name.as_str()).collect();
            names.sort_unstable();
            self.diags.push(
                Diagnostic::error(format!("no block named `{}`", r.value), r.span.clone())
                    .block("[model]")
                    .field("output")
                    .expected("the block that predicts the noise")
                    .found(format!("`{}`", r.value))
                    .maybe_help(suggestion(&r.value, names.iter().copied())),
            );
            return;
        };
        let (Some(out), Some(x)) = (self.value[v.index()], self.value[vertex_x().index()]) else { return };
        self.output = Some(out);
        let (want, got) = (self.builder.shape(x).clone(), self.builder.shape(out).clone());
        if want == got {
            return;
        }
        let mut help = String::from("the model predicts the noise added to `x`, so it must return x's shape");
        if let (Some((wc, wh, ww)), Some((gc, gh, gw))) = (want.as_image(), got.as_image()) {
            if wc != gc {
                help.push_str(&self.output_channels_help(&r.value, &want, wc));
            }
            if (wh, ww) != (gh, gw) {
                self.spatial_mismatches.push("[model]".into());
                help.push_str("; ");
                help.push_str(&self.size_help(None, None));
            }
        }
        self.diags.push(
            Diagnostic::error("the output shape differs from the input shape", r.span.clone())
                .block("[model]")
                .field("output")
                .expected(format!("{want} (the shape of `x`)"))
                .found(format!("`{}` gives {got}", r.value))
                .help(help),
        );
    }

    /// What to change when the output block `out` gives the wrong channel count: its own
    /// `channels` when it has one; else another block that gives x's shape, or a conv to add.
    fn output_channels_help(&self, out: &str, want: &Shape, channels: usize) -> String {
        let block = self.file.blocks.iter().find(|b| b.name == out);
        let kind = block.and_then(|b| b.kind.as_ref()).map(|k| k.value);
        if kind.is_some_and(|k| k.fields().any(|f| f == "channels")) {
            return format!(
                "; give `{out}` {channels} output channels (e.g. `channels = \"input.channels\"`)"
            );
        }
        let keeps =
            kind.map(|k| format!("; a `{}` keeps its input's channel count", k.name())).unwrap_or_default();
        let fitting = self.file.blocks.iter().enumerate().find(|(i, b)| {
            b.name != out
                && self.value[vertex_of_block(*i).index()].is_some_and(|id| self.shape_of(id) == want)
        });
        match fitting {
            Some((_, b)) => format!("{keeps}: did you mean `{}`, which gives {want}?", b.name),
            None => format!(
                "{keeps}: add a conv after `{out}` with `channels = \"input.channels\"` and make it the output"
            ),
        }
    }

    /// When sizes failed to line up, says whether the input size is the reason: each
    /// downsample rounds odd sizes up, so H and W must be multiples of 2^(downsamples on a path).
    /// Then the input size is the one error, at the line to edit, and the mismatches it caused
    /// downstream become a note on it instead of errors of their own.
    fn check_input_size(&mut self) {
        if self.spatial_mismatches.is_empty() {
            return;
        }
        let Some(input) = &self.file.input else { return };
        let depth = self.downsample_depth();
        let factor = 1usize << depth.min(30);
        let square = input.height.value == input.width.value;
        let mut consequences = false;
        for (field, v) in [("height", &input.height), ("width", &input.width)] {
            let n = v.value;
            if n.is_multiple_of(factor) || (square && field == "width") {
                continue;
            }
            // A square input gets one message, about both sides.
            let what = if square { format!("size of {n}x{n}") } else { format!("{field} of {n}") };
            let mut path = vec![n.to_string()];
            let mut s = n;
            for _ in 0..depth {
                s = s.div_ceil(2);
                path.push(s.to_string());
            }
            let lower = n / factor * factor;
            let sizes =
                if lower > 0 { format!("{lower} or {}", lower + factor) } else { format!("{factor}") };
            let times = match depth {
                1 => "once".to_string(),
                2 => "twice".to_string(),
                d => format!("{d} times"),
            };
            let plural = if depth == 1 { "" } else { "s" };
            let d = Diagnostic::error(
                format!("an input {what} cannot be halved {times} evenly ({})", path.join(" -> ")),
                v.span.clone(),
            )
            .block("[input]")
            .field(field)
            .expected(format!("a multiple of {factor} for {depth} downsample{plural}"))
            .found(n.to_string())
            .help(format!("use {sizes} (or remove a downsample)"));
            self.diags.push(origin_label(d, v));
            consequences = true;
        }
        if consequences {
            self.fold_spatial_mismatches_into_input_error();
        }
    }

    /// Drops the spatial-mismatch errors (each block reports at most one error, so the block
    /// names them exactly) and says on the last input-size error what each of them found.
    fn fold_spatial_mismatches_into_input_error(&mut self) {
        let caused = std::mem::take(&mut self.spatial_mismatches);
        let is_caused = |d: &Diagnostic| {
            d.is_error()
                && d.block.as_deref().is_some_and(|b| b != "[input]" && caused.iter().any(|c| c == b))
        };
        let notes: Vec<String> = self
            .diags
            .iter()
            .filter(|d| is_caused(d))
            .map(|d| {
                let block = d.block.as_deref().unwrap_or_default();
                let found = d.found.as_deref().unwrap_or_default();
                format!("so the sizes at `{block}` no longer line up: {found}")
            })
            .collect();
        self.diags.retain(|d| !is_caused(d));
        if let Some(d) = self.diags.iter_mut().rev().find(|d| d.block.as_deref() == Some("[input]")) {
            d.notes.extend(notes);
        }
    }

    /// The most downsample blocks on any path from `x`.
    fn downsample_depth(&self) -> usize {
        let mut depth = vec![0usize; self.g.node_count()];
        for v in self.topological_order() {
            let own = usize::from(
                self.block(v).and_then(|b| b.kind.as_ref()).is_some_and(|k| k.value == OpKind::Downsample),
            );
            let inputs = self
                .g
                .neighbors_directed(v, Direction::Incoming)
                .map(|u| depth[u.index()])
                .max()
                .unwrap_or(0);
            depth[v.index()] = inputs + own;
        }
        depth.into_iter().max().unwrap_or(0)
    }

    fn check_unused(&mut self) {
        // Without a valid output every block looks unused; that is reported once, elsewhere.
        let output_known =
            self.file.output.as_ref().is_some_and(|o| self.by_name.contains_key(o.value.as_str()));
        if output_known {
            for name in self.unread_blocks() {
                let block = self.file.blocks.iter().find(|b| b.name == name).expect("a block of the file");
                // A block with an error of its own, or one that a misspelt reference probably
                // meant (the error's note names it), needs no second message.
                if block.op.is_none() || self.unknown_reference_reported {
                    continue;
                }
                self.diags.push(
                    Diagnostic::warning(
                        format!("the output of `{name}` is never used"),
                        block.name_span.clone(),
                    )
                    .block(name)
                    .help("use it as the `in` of another block, or remove it"),
                );
            }
        }
        if let Some(time) = &self.file.time {
            if self.g.neighbors_directed(vertex_time(), Direction::Outgoing).next().is_none() {
                self.diags.push(
                    Diagnostic::warning(
                        "the time embedding is never used: the model ignores the timestep",
                        time.span.clone(),
                    )
                    .block("[time]")
                    .help("resblocks read it; add a `resblock`, or remove [time]"),
                );
            }
        }
    }
}

/// The numbers of a block that a shape error can be about, with where they were written.
#[derive(Default)]
struct BlockParams<'a> {
    channels: Option<&'a Val<usize>>,
    groups: Option<&'a Val<usize>>,
    heads: Option<&'a Val<usize>>,
}

impl<'a> BlockParams<'a> {
    fn of(op: &'a BlockOp) -> Self {
        match op {
            BlockOp::Resblock { channels, groups, .. } => {
                BlockParams { channels: Some(channels), groups: Some(groups), heads: None }
            }
            BlockOp::GroupNorm { groups } => BlockParams { groups: Some(groups), ..Default::default() },
            BlockOp::Attention { heads, groups } => {
                BlockParams { channels: None, groups: Some(groups), heads: Some(heads) }
            }
            // conv `channels` is the output count; no group or head rule reads it
            BlockOp::Conv { .. }
            | BlockOp::ConvTranspose { .. }
            | BlockOp::Silu
            | BlockOp::Linear { .. }
            | BlockOp::Downsample
            | BlockOp::Upsample
            | BlockOp::Concat
            | BlockOp::Add
            | BlockOp::Embedding { .. } => BlockParams::default(),
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// What other frameworks call the model's inputs: `input` or `image` is `x`, `timestep` is `t`.
fn well_known_input(name: &str) -> Option<String> {
    match name.to_ascii_lowercase().as_str() {
        "input" | "inputs" | "image" | "images" | "img" | "sample" | "noisy" | "x_t" | "xt" => {
            Some(format!("the noisy image input is called `x`: write `\"x\"` for `\"{name}\"`"))
        }
        "timestep" | "timesteps" | "step" | "temb" | "t_emb" | "time_emb" | "time_embedding" | "emb" => {
            Some("the timestep input is called `t`, and its embedding (what blocks read) `time`".into())
        }
        "label" | "labels" | "class" | "classes" | "class_labels" | "cond" | "condition" => {
            Some("the class label input of a model with [condition] is called `y`".into())
        }
        _ => None,
    }
}

/// Labels where a value from `[vars]` was defined: "`channels[1]` = 60 is defined here".
fn origin_label(d: Diagnostic, v: &Val<usize>) -> Diagnostic {
    match &v.origin {
        Some((name, span)) => d.label(span.clone(), format!("`{name}` = {} is defined here", v.value)),
        None => d,
    }
}

fn checked_numel(s: &Shape) -> Option<usize> {
    s.0.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
}

/// Divisors of n as a short list: "1, 2, 3, 4, 6, 12".
fn divisors(n: usize) -> String {
    let ds: Vec<String> = (1..=n).filter(|&d| n.is_multiple_of(d)).take(12).map(|d| d.to_string()).collect();
    ds.join(", ")
}

/// The multiples of m just below and above n: "56 or 64".
fn nearby_multiples(n: usize, m: usize) -> String {
    let lower = n / m * m;
    if lower == 0 {
        format!("{m}")
    } else {
        format!("{lower} or {}", lower + m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_divisors_and_multiples() {
        assert_eq!(divisors(12), "1, 2, 3, 4, 6, 12");
        assert_eq!(nearby_multiples(60, 8), "56 or 64");
        assert_eq!(nearby_multiples(4, 8), "8");
    }
}
