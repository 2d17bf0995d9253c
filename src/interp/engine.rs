//! The generic executor: runs the primitive graph forward over a batch, keeping only the values
//! some backward needs, then walks the nodes in reverse accumulating gradients (reverse-mode
//! autograd over the graph; each op's forward and backward live in its module under `crate::ops`,
//! which call the kernels).
//!
//! Values are flat NCHW buffers from a [`Pool`]; a value is returned to the pool right after its
//! last forward reader (inference, or training when no backward needs it) or right after the
//! last backward that reads it, so steady-state steps allocate nothing.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::graph::{Graph, NodeId, Op, Shape};
use crate::ops::{Backward, Forward};

use super::schedule::Schedule;

use crate::kernels::elementwise;
use crate::kernels::{Pool, Precision, Real, Workers};

/// Where a forward/backward pass stands, so misuse is caught with a message instead of garbage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    /// forward_train ran; backward may follow.
    Trained,
}

pub struct Engine<T: Real> {
    graph: Graph,
    /// Index in the parameter list of each node's first parameter (one more entry: the total),
    /// so node `id`'s parameters are `param_start[id]..param_start[id + 1]`.
    param_start: Vec<usize>,
    /// Whether gradients flow into each value (false for x, t and what depends only on them).
    requires_grad: Vec<bool>,
    /// The order nodes run in, what each reads and how long values live.
    schedule: Schedule,
    values: Vec<Option<Vec<T>>>,
    /// Per-node statistics the backward needs (GroupNorm mean and 1/std).
    saved_stats: Vec<Option<Vec<T>>>,
    grads: Vec<Option<Vec<T>>>,
    /// Input gradients one node's backward hands over (reused across nodes).
    input_grads: Vec<(usize, Vec<T>)>,
    pool: Pool<T>,
    workers: Workers<T>,
    batch: usize,
    phase: Phase,
    /// Seconds spent per op kind (forward, backward), collected when `MDC_PROFILE` is set.
    profile: Option<BTreeMap<&'static str, (f64, f64)>>,
}

impl<T: Real> Engine<T> {
    pub fn new(graph: Graph) -> Self {
        let n = graph.nodes.len();
        let mut param_start = Vec::with_capacity(n + 1);
        let mut next = 0;
        for node in &graph.nodes {
            param_start.push(next);
            next += node.op.params().len();
        }
        param_start.push(next);
        let requires_grad = requires_grad(&graph, false);
        Engine {
            param_start,
            requires_grad,
            schedule: Schedule::new(&graph, true),
            values: vec![None; n],
            saved_stats: vec![None; n],
            grads: vec![None; n],
            input_grads: Vec::new(),
            pool: Pool::default(),
            workers: Workers::new(),
            batch: 0,
            phase: Phase::Idle,
            profile: std::env::var_os("MDC_PROFILE").map(|_| BTreeMap::new()),
            graph,
        }
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Runs the conv and linear products at `precision` (bf16 takes effect for f32 only; callers
    /// go through [`crate::kernels::bf16::resolve`], which refuses bf16 on a CPU without
    /// AVX512_BF16 unless the portable reference kernel is asked for).
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.workers.precision = precision;
        self
    }

    /// Caps the im2col columns built at once (elements; convs run in bands of output rows). The
    /// default suits this machine's caches; tests set it tiny so every conv runs in many bands.
    pub fn with_column_budget(mut self, elements: usize) -> Self {
        self.workers.column_budget = elements;
        self
    }

    /// Also computes the gradient with respect to the image input, returned by
    /// [`Self::backward_input_grad`] (tests check every op's input gradient through it).
    pub fn with_input_grad(mut self) -> Self {
        self.requires_grad = requires_grad(&self.graph, true);
        self
    }

    /// Runs every node on its own, in the graph's order, without fusing SiLUs and time biases
    /// into GroupNorms' passes (tests check that fusing changes no bit).
    pub fn unfused(mut self) -> Self {
        self.schedule = Schedule::new(&self.graph, false);
        self
    }

    /// The nodes whose work runs inside a GroupNorm's pass (fused SiLUs and time biases).
    pub fn fused_nodes(&self) -> Vec<NodeId> {
        (0..self.graph.nodes.len()).filter(|&id| self.schedule.is_fused(id)).collect()
    }

    /// Most bytes of activations, gradients and statistics held at once so far.
    pub fn peak_bytes(&self) -> usize {
        self.pool.peak_bytes()
    }

    /// Time per op kind so far, slowest first (empty unless `MDC_PROFILE` was set).
    pub fn profile_report(&self) -> String {
        let Some(p) = &self.profile else { return String::new() };
        let mut rows: Vec<_> = p.iter().collect();
        rows.sort_by(|a, b| (b.1 .0 + b.1 .1).total_cmp(&(a.1 .0 + a.1 .1)));
        let mut out = String::from("op kind                forward s  backward s\n");
        for (kind, (f, b)) in rows {
            out.push_str(&format!("{kind:<22} {f:>9.3}  {b:>10.3}\n"));
        }
        out
    }

    fn record(&mut self, id: NodeId, start: Option<Instant>, forward: bool) {
        if let (Some(p), Some(start)) = (&mut self.profile, start) {
            let node = &self.graph.nodes[id];
            let kind = if let Op::Conv2d(conv) = &node.op { conv.profile_label() } else { node.op.kind() };
            let e = p.entry(kind).or_default();
            let secs = start.elapsed().as_secs_f64();
            if forward {
                e.0 += secs;
            } else {
                e.1 += secs;
            }
        }
    }

    fn release_all(&mut self) {
        for slot in self.values.iter_mut().chain(&mut self.saved_stats).chain(&mut self.grads) {
            if let Some(v) = slot.take() {
                self.pool.give(v);
            }
        }
        self.phase = Phase::Idle;
    }

    /// Runs the graph on `batch` images `x` [N, C, H, W] at timesteps `t` [N] with, for a
    /// conditional model, class labels `y` [N] (None: every image gets the null label); `params`
    /// in graph order. With `train`, keeps what [`Self::backward`] needs. Returns the output, flat NCHW.
    pub fn forward(
        &mut self,
        params: &[&[T]],
        x: &[T],
        t: &[T],
        y: Option<&[T]>,
        batch: usize,
        train: bool,
    ) -> Vec<T> {
        self.release_all();
        let g = &self.graph;
        assert_eq!(x.len(), batch * g.input_shape().numel(), "input x has the wrong number of elements");
        assert_eq!(t.len(), batch, "one timestep per image expected");
        let labels: Vec<T> = match (g.label_input(), y) {
            (Some(l), Some(y)) => {
                assert_eq!(y.len(), batch, "one label per image expected");
                y.iter().zip(t).map(|(&y, &t)| T::from_f64(l.shown(y.to_f64(), t.to_f64()))).collect()
            }
            (Some(l), None) => vec![T::from_f64(l.null() as f64); batch],
            (None, Some(_)) => panic!("interp: labels given to a model without a [condition]"),
            (None, None) => Vec::new(),
        };
        self.batch = batch;
        for k in 0..self.schedule.order.len() {
            let id = self.schedule.order[k];
            // a fused node's value was written by its GroupNorm
            if !self.schedule.is_fused(id) {
                let start = self.profile.as_ref().map(|_| Instant::now());
                let out = self.eval_node(id, params, [x, t, &labels], train);
                self.record(id, start, true);
                self.values[self.schedule.writes(id)] = Some(out);
            }
            let (sc, reads) = (&self.schedule, &self.schedule.reads[id]);
            for (j, &i) in reads.iter().enumerate() {
                let keep = train && sc.last_backward_reader[i].is_some();
                if sc.last_reader[i] == Some(id) && !keep && !reads[..j].contains(&i) {
                    if let Some(v) = self.values[i].take() {
                        self.pool.give(v);
                    }
                }
            }
            let unread = self.schedule.last_reader[id].is_none() && id != self.graph.output;
            if unread {
                if let Some(v) = self.values[id].take() {
                    self.pool.give(v);
                }
            }
        }
        let out_buf = self.values[self.graph.output].take().expect("output computed");
        let out = out_buf.clone();
        self.pool.give(out_buf);
        if train {
            self.phase = Phase::Trained;
        }
        out
    }

    /// The value of `id`, alive by construction: [`Engine::new`] keeps each value until its last
    /// forward reader and, for readers whose op keeps its inputs
    /// ([`crate::ops::PrimitiveOp::backward_keeps_inputs`], which every op must state), until
    /// their backward.
    fn input(values: &[Option<Vec<T>>], id: NodeId) -> &[T] {
        values[id].as_deref().expect("interp: a value is alive until its last reader")
    }

    /// `data` = the batch's images, timesteps and labels (the graph's inputs read them).
    fn eval_node(&mut self, id: NodeId, params: &[&[T]], data: [&[T]; 3], train: bool) -> Vec<T> {
        let g = &self.graph;
        let node = &g.nodes[id];
        let mut y = self.pool.take(self.batch * node.shape.numel());
        let [x, t, labels] = data;
        let reads = &self.schedule.reads[id];
        let inputs: Vec<&[T]> = if id == g.input {
            vec![x]
        } else if id == g.timestep {
            vec![t]
        } else if Some(id) == g.label {
            vec![labels]
        } else {
            reads.iter().map(|&i| Self::input(&self.values, i)).collect()
        };
        let input_shapes: Vec<&Shape> = reads.iter().map(|&i| &g.nodes[i].shape).collect();
        node.op.forward(Forward {
            batch: self.batch,
            inputs: &inputs,
            input_shapes: &input_shapes,
            shape: &node.shape,
            params: &params[self.param_start[id]..self.param_start[id + 1]],
            out: &mut y,
            workers: &mut self.workers,
            pool: &mut self.pool,
            saved: if train { Some(&mut self.saved_stats[id]) } else { None },
            epilogue: self.schedule.epilogue(id),
        });
        y
    }

    /// Gradients of `sum(dy * y)` for the last training forward: every parameter gradient in
    /// `grads` (graph order) is overwritten.
    pub fn backward(&mut self, params: &[&[T]], dy: &[T], grads: &mut [&mut [T]]) {
        self.reverse_pass(params, dy, grads);
        self.release_all();
    }

    /// [`Self::backward`], also returning d(sum(dy * y))/dx when built [`Self::with_input_grad`].
    pub fn backward_input_grad(
        &mut self,
        params: &[&[T]],
        dy: &[T],
        grads: &mut [&mut [T]],
    ) -> Option<Vec<T>> {
        self.reverse_pass(params, dy, grads);
        let dx = self.grads[self.graph.input].take();
        self.release_all();
        dx
    }

    fn reverse_pass(&mut self, params: &[&[T]], dy: &[T], grads: &mut [&mut [T]]) {
        assert!(self.phase == Phase::Trained, "interp: backward needs a forward_train just before it");
        let n = self.batch;
        assert_eq!(dy.len(), n * self.graph.output_shape().numel(), "dy has the wrong number of elements");
        for g in grads.iter_mut() {
            g.fill(T::ZERO);
        }
        let mut dout = self.pool.take(dy.len());
        dout.copy_from_slice(dy);
        self.grads[self.graph.output] = Some(dout);
        for k in (0..self.schedule.order.len()).rev() {
            let id = self.schedule.order[k];
            // the input's own gradient stays for backward_input_grad
            if id == self.graph.input {
                continue;
            }
            if let Some(g) = self.grads[id].take() {
                let start = self.profile.as_ref().map(|_| Instant::now());
                self.backward_node(id, params, g, grads);
                // a fused node's backward is its GroupNorm's
                self.record(self.schedule.runs_in(id), start, false);
            }
            if let Some(s) = self.saved_stats[id].take() {
                self.pool.give(s);
            }
            for &i in &self.schedule.reads[id] {
                if self.schedule.last_backward_reader[i] == Some(id) {
                    if let Some(v) = self.values[i].take() {
                        self.pool.give(v);
                    }
                }
            }
        }
    }

    /// Adds `buf` to the gradient of value `v` (or makes it the gradient); drops it when nothing
    /// upstream needs it.
    fn accumulate(&mut self, v: NodeId, buf: Vec<T>) {
        if !self.requires_grad[v] {
            self.pool.give(buf);
            return;
        }
        match &mut self.grads[v] {
            Some(existing) => {
                elementwise::add_into(existing, &buf);
                self.pool.give(buf);
            }
            slot @ None => *slot = Some(buf),
        }
    }

    /// Runs node `id`'s backward on `dy`; the gradient of a node fused into a GroupNorm goes
    /// through the GroupNorm's.
    fn backward_node(&mut self, id: NodeId, params: &[&[T]], dy: Vec<T>, grads: &mut [&mut [T]]) {
        let target = self.schedule.runs_in(id);
        let g = &self.graph;
        let (node, reads) = (&g.nodes[target], &self.schedule.reads[target]);
        let inputs: Vec<&[T]> = if node.op.backward_keeps_inputs() {
            node.inputs.iter().map(|&i| Self::input(&self.values, i)).collect()
        } else {
            Vec::new()
        };
        let input_shapes: Vec<&Shape> = reads.iter().map(|&i| &g.nodes[i].shape).collect();
        let wants: Vec<bool> = reads.iter().map(|&i| self.requires_grad[i]).collect();
        let (p0, p1) = (self.param_start[target], self.param_start[target + 1]);
        let mut input_grads = std::mem::take(&mut self.input_grads);
        node.op.backward(
            Backward {
                batch: self.batch,
                inputs: &inputs,
                input_shapes: &input_shapes,
                shape: &node.shape,
                params: &params[p0..p1],
                param_grads: &mut grads[p0..p1],
                wants: &wants,
                saved: self.saved_stats[target].as_deref(),
                epilogue: self.schedule.epilogue(target),
                workers: &mut self.workers,
                pool: &mut self.pool,
                input_grads: &mut input_grads,
            },
            dy,
        );
        for (k, buf) in input_grads.drain(..) {
            self.accumulate(self.schedule.reads[target][k], buf);
        }
        self.input_grads = input_grads;
    }
}

/// Whether gradients flow into each value: nodes with parameters and everything downstream of
/// them, plus the image input and its dependents when `input` is set.
fn requires_grad(graph: &Graph, input: bool) -> Vec<bool> {
    let mut req = vec![false; graph.nodes.len()];
    for (id, node) in graph.nodes.iter().enumerate() {
        req[id] = (input && id == graph.input)
            || !node.op.params().is_empty()
            || node.inputs.iter().any(|&i| req[i]);
    }
    req
}
