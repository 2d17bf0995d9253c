//! Wiring the block graph: an edge for every `in`/`time` reference, the names that do not
//! resolve, cycles (Tarjan's SCC) and the order in which blocks are expanded.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use petgraph::graph::NodeIndex;
use petgraph::visit::EdgeRef;
use petgraph::Direction;

use super::{vertex_of_block, vertex_t, vertex_time, Build};
use crate::dsl::diag::suggestion;
use crate::dsl::{BlockDecl, Diagnostic, Val};

impl<'f> Build<'f> {
    /// Adds an edge for every reference; reports names that do not exist.
    pub(super) fn wire(&mut self) {
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
    pub(super) fn unread_blocks(&self) -> Vec<&'f str> {
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
    pub(super) fn missing_time(&self, readers: &[(&BlockDecl, &Val<String>)]) -> Option<Diagnostic> {
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

    pub(super) fn unknown_reference(&self, block: &BlockDecl, r: &Val<String>, field: &str) -> Diagnostic {
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

    pub(super) fn find_cycles(&mut self) {
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
    pub(super) fn cycle_path(&self, start: NodeIndex, scc: &[NodeIndex]) -> Vec<NodeIndex> {
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
    pub(super) fn topological_order(&self) -> Vec<NodeIndex> {
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
