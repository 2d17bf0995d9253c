//! The interpreter's plan for one graph: which nodes run fused into a GroupNorm's pass, the
//! order nodes run in, the values each reads, and the last reader of each value forward and
//! backward (when the engine may give its buffer back to the pool).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::graph::{Graph, NodeId, Op};
use crate::ops::Epilogue;

pub(super) struct Schedule {
    /// The order the nodes run in forward (the backward runs it in reverse): the graph's, but
    /// for a GroupNorm fused with a time bias, which waits for the bias ([`order`]).
    pub order: Vec<NodeId>,
    /// The values each node's pass reads: its inputs; a fused GroupNorm's bias too; none for the
    /// nodes fused into it.
    pub reads: Vec<Vec<NodeId>>,
    /// Forward: the last node reading each value (None: nobody reads it).
    pub last_reader: Vec<Option<NodeId>>,
    /// Training: the node whose backward is the last to need each value (None: no backward does).
    pub last_backward_reader: Vec<Option<NodeId>>,
    /// For a GroupNorm that runs fused: what its pass computes after it, and the node whose
    /// value that pass writes (the SiLU, or the bias added after it).
    fused_into: Vec<Option<(Epilogue, NodeId)>>,
    /// For the nodes fused into a GroupNorm: that GroupNorm (they do no work of their own,
    /// forward or backward).
    fused_from: Vec<Option<NodeId>>,
}

impl Schedule {
    /// The plan for `graph`, with the fusions when `fuse` (without: every node runs on its own,
    /// in the graph's order; tests compare the two).
    pub fn new(graph: &Graph, fuse: bool) -> Schedule {
        let n = graph.nodes.len();
        let (fused_into, fused_from) = if fuse { fusions(graph) } else { (vec![None; n], vec![None; n]) };
        let reads: Vec<Vec<NodeId>> = (0..n)
            .map(|id| match (fused_from[id], fused_into[id]) {
                (Some(_), _) => Vec::new(),
                (None, Some((Epilogue::SiluThenChannelBias, bias))) => {
                    vec![graph.nodes[id].inputs[0], graph.nodes[bias].inputs[1]]
                }
                (None, _) => graph.nodes[id].inputs.clone(),
            })
            .collect();
        let order = order(graph, &reads);
        let (mut last_reader, mut last_backward_reader) = (vec![None; n], vec![None; n]);
        for &id in &order {
            let node = &graph.nodes[id];
            for (k, &i) in reads[id].iter().enumerate() {
                last_reader[i] = Some(id);
                // the backward runs the order in reverse, so the first reader is the last; a
                // backward needs its node's own inputs, never a fused bias
                let kept = node.op.backward_keeps_inputs() && k < node.inputs.len();
                if kept && last_backward_reader[i].is_none() {
                    last_backward_reader[i] = Some(id);
                }
            }
        }
        Schedule { order, reads, last_reader, last_backward_reader, fused_into, fused_from }
    }

    /// Whether `id`'s work runs in a GroupNorm's pass (it has none of its own).
    pub fn is_fused(&self, id: NodeId) -> bool {
        self.fused_from[id].is_some()
    }

    /// The node whose forward and backward do `id`'s work: its GroupNorm when fused, else itself.
    pub fn runs_in(&self, id: NodeId) -> NodeId {
        self.fused_from[id].unwrap_or(id)
    }

    /// The value `id`'s pass writes: the last node fused into it, else its own.
    pub fn writes(&self, id: NodeId) -> NodeId {
        self.fused_into[id].map_or(id, |(_, to)| to)
    }

    /// What `id`'s pass computes after its own op.
    pub fn epilogue(&self, id: NodeId) -> Epilogue {
        self.fused_into[id].map_or(Epilogue::None, |(e, _)| e)
    }
}

/// The nodes fused into a GroupNorm's pass (`fused_into` per GroupNorm, `fused_from` per fused
/// node): a SiLU that is its only reader, and after it a per-channel bias added to that SiLU's
/// output and nothing else (a ResBlock's time bias). Neither may be the graph's output, whose
/// value must be its own.
#[allow(clippy::type_complexity)]
fn fusions(graph: &Graph) -> (Vec<Option<(Epilogue, NodeId)>>, Vec<Option<NodeId>>) {
    let n = graph.nodes.len();
    let (mut fused_into, mut fused_from) = (vec![None; n], vec![None; n]);
    let consumers = graph.consumers();
    let only_reader = |id: NodeId, op: fn(&Op) -> bool| match consumers[id].as_slice() {
        [r] if id != graph.output && op(&graph.nodes[*r].op) => Some(*r),
        _ => None,
    };
    for (id, node) in graph.nodes.iter().enumerate() {
        if !matches!(node.op, Op::GroupNorm(_)) {
            continue;
        }
        let Some(silu) = only_reader(id, |op| matches!(op, Op::Silu(_))) else { continue };
        fused_from[silu] = Some(id);
        // the bias must not depend on the GroupNorm, which will wait for it (today's ops make
        // no per-channel vector from an image, but a new op could)
        let bias = only_reader(silu, |op| matches!(op, Op::AddChannelBias(_))).filter(|&b| {
            let ins = &graph.nodes[b].inputs;
            ins[0] == silu && b != graph.output && !depends_on(graph, ins[1], id)
        });
        fused_into[id] = Some(match bias {
            Some(b) => {
                fused_from[b] = Some(id);
                (Epilogue::SiluThenChannelBias, b)
            }
            None => (Epilogue::Silu, silu),
        });
    }
    (fused_into, fused_from)
}

/// Whether value `v` is `target` or computed from it.
fn depends_on(graph: &Graph, v: NodeId, target: NodeId) -> bool {
    // node ids are a topological order: nothing below `target` reads it
    let mut stack = vec![v];
    let mut seen = vec![false; graph.nodes.len()];
    while let Some(u) = stack.pop() {
        if u == target {
            return true;
        }
        if u > target && !std::mem::replace(&mut seen[u], true) {
            stack.extend(&graph.nodes[u].inputs);
        }
    }
    false
}

/// The forward's order: each node after the values it reads (`reads`, which for a GroupNorm
/// fused with a time bias include the bias, made later in the graph), otherwise the graph's
/// own order (the ready node with the smallest id first): a ResBlock's time projection moves
/// before its first GroupNorm, and nothing else moves.
fn order(graph: &Graph, reads: &[Vec<NodeId>]) -> Vec<NodeId> {
    let n = graph.nodes.len();
    let after: Vec<Vec<NodeId>> = (0..n)
        .map(|id| {
            let mut deps = graph.nodes[id].inputs.clone();
            deps.extend(&reads[id]);
            deps.sort_unstable();
            deps.dedup();
            deps
        })
        .collect();
    let mut waiting_on: Vec<usize> = after.iter().map(Vec::len).collect();
    let mut unblocks = vec![Vec::new(); n];
    for (id, deps) in after.iter().enumerate() {
        for &d in deps {
            unblocks[d].push(id);
        }
    }
    let mut ready: BinaryHeap<Reverse<NodeId>> =
        (0..n).filter(|&id| waiting_on[id] == 0).map(Reverse).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(Reverse(id)) = ready.pop() {
        order.push(id);
        for &u in &unblocks[id] {
            waiting_on[u] -= 1;
            if waiting_on[u] == 0 {
                ready.push(Reverse(u));
            }
        }
    }
    assert_eq!(order.len(), n, "interp: fusing made a cycle");
    order
}
