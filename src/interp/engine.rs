//! The generic executor: runs the primitive graph forward over a batch, keeping only the values
//! some backward needs, then walks the nodes in reverse accumulating gradients (reverse-mode
//! autograd over the graph; each op's backward lives in its kernel module).
//!
//! Values are flat NCHW buffers from a [`Pool`]; a value is returned to the pool right after its
//! last forward reader (inference, or training when no backward needs it) or right after the
//! last backward that reads it, so steady-state steps allocate nothing.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::graph::{Graph, NodeId, Op, Shape};

use super::bf16::Precision;
use super::kernels::{activation, attention, conv, elementwise, embedding, linear, norm, upsample};
use super::real::Real;
use super::workspace::{Pool, Workers};

/// Where a forward/backward pass stands, so misuse is caught with a message instead of garbage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    /// forward_train ran; backward may follow.
    Trained,
}

pub struct Engine<T: Real> {
    graph: Graph,
    /// Index in the parameter list of each node's first parameter.
    param_start: Vec<usize>,
    /// Whether gradients flow into each value (false for x, t and what depends only on them).
    requires_grad: Vec<bool>,
    /// Forward: the last node reading each value (None: nobody reads it).
    last_reader: Vec<Option<NodeId>>,
    /// Training: the node whose backward is the last to need each value (None: no backward does).
    last_backward_reader: Vec<Option<NodeId>>,
    /// For a GroupNorm whose only reader is a SiLU: that SiLU, computed in the same pass.
    fused_silu: Vec<Option<NodeId>>,
    /// For such a SiLU: its GroupNorm (the SiLU node itself does no work, forward or backward).
    fused_from: Vec<Option<NodeId>>,
    values: Vec<Option<Vec<T>>>,
    /// Per-node statistics the backward needs (GroupNorm mean and 1/std).
    saved_stats: Vec<Option<Vec<T>>>,
    grads: Vec<Option<Vec<T>>>,
    pool: Pool<T>,
    workers: Workers<T>,
    batch: usize,
    phase: Phase,
    /// Seconds spent per op kind (forward, backward), collected when `MDC_PROFILE` is set.
    profile: Option<BTreeMap<&'static str, (f64, f64)>>,
}

/// Whether `op`'s backward reads its inputs' forward values.
fn backward_reads_inputs(op: &Op) -> bool {
    matches!(
        op,
        Op::Conv2d { .. } | Op::Linear { .. } | Op::GroupNorm { .. } | Op::Silu | Op::Attention { .. }
    )
}

impl<T: Real> Engine<T> {
    pub fn new(graph: Graph) -> Self {
        let n = graph.nodes.len();
        let mut param_start = Vec::with_capacity(n);
        let mut next = 0;
        for node in &graph.nodes {
            param_start.push(next);
            next += node.op.params().len();
        }
        let requires_grad = requires_grad(&graph, false);
        let mut last_reader = vec![None; n];
        let mut last_backward_reader: Vec<Option<NodeId>> = vec![None; n];
        let (mut fused_silu, mut fused_from) = (vec![None; n], vec![None; n]);
        let consumers = graph.consumers();
        for (id, node) in graph.nodes.iter().enumerate() {
            if let (Op::GroupNorm { .. }, [s]) = (&node.op, consumers[id].as_slice()) {
                if graph.nodes[*s].op == Op::Silu && id != graph.output {
                    fused_silu[id] = Some(*s);
                    fused_from[*s] = Some(id);
                }
            }
        }
        for (id, node) in graph.nodes.iter().enumerate() {
            for &i in &node.inputs {
                last_reader[i] = Some(id);
                if backward_reads_inputs(&node.op) && fused_from[id].is_none() {
                    // the backward visits nodes in reverse, so the smallest reader is the last
                    last_backward_reader[i] = Some(last_backward_reader[i].map_or(id, |r| r.min(id)));
                }
            }
        }
        Engine {
            param_start,
            requires_grad,
            last_reader,
            last_backward_reader,
            fused_silu,
            fused_from,
            values: vec![None; n],
            saved_stats: vec![None; n],
            grads: vec![None; n],
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

    /// Runs the conv and linear products at `precision` (bf16 only takes effect for f32 on a CPU
    /// with AVX512_BF16; callers check [`super::bf16::available`] to tell users).
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
            let kind = match node.op {
                Op::Conv2d { kernel: 1, .. } => "conv2d 1x1",
                Op::Conv2d { stride: 2, .. } => "conv2d strided",
                _ => node.op.kind(),
            };
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

    /// Runs the graph on `batch` images `x` [N, C, H, W] at timesteps `t` [N]; `params` in graph
    /// order. With `train`, keeps what [`Self::backward`] needs. Returns the output, flat NCHW.
    pub fn forward(&mut self, params: &[&[T]], x: &[T], t: &[T], batch: usize, train: bool) -> Vec<T> {
        self.release_all();
        let g = &self.graph;
        assert_eq!(x.len(), batch * g.input_shape().numel(), "input x has the wrong number of elements");
        assert_eq!(t.len(), batch, "one timestep per image expected");
        self.batch = batch;
        for id in 0..self.graph.nodes.len() {
            // a fused SiLU's value was written by its GroupNorm
            if self.fused_from[id].is_none() {
                let start = self.profile.as_ref().map(|_| Instant::now());
                let out = self.eval_node(id, params, x, t, train);
                self.record(id, start, true);
                self.values[self.fused_silu[id].unwrap_or(id)] = Some(out);
            }
            let node = &self.graph.nodes[id];
            for (j, &i) in node.inputs.iter().enumerate() {
                let keep = train && self.last_backward_reader[i].is_some();
                if self.last_reader[i] == Some(id) && !keep && !node.inputs[..j].contains(&i) {
                    if let Some(v) = self.values[i].take() {
                        self.pool.give(v);
                    }
                }
            }
            let unread = self.last_reader[id].is_none() && id != self.graph.output;
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

    fn input(values: &[Option<Vec<T>>], id: NodeId) -> &[T] {
        values[id].as_deref().expect("interp: an input value was freed before its last reader (liveness bug)")
    }

    fn eval_node(&mut self, id: NodeId, params: &[&[T]], x: &[T], t: &[T], train: bool) -> Vec<T> {
        let node = &self.graph.nodes[id];
        let n = self.batch;
        let ps = self.param_start[id];
        let mut y = self.pool.take(n * node.shape.numel());
        let vals = &self.values;
        let inp = |k: usize| Self::input(vals, node.inputs[k]);
        let in_shape = |k: usize| &self.graph.nodes[node.inputs[k]].shape;
        match node.op {
            Op::Input { .. } => y.copy_from_slice(x),
            Op::Timestep => y.copy_from_slice(t),
            Op::TimestepEmbedding { dim } => embedding::forward(dim, inp(0), &mut y),
            Op::Linear { in_features, out_features } => {
                let (w, b) = (params[ps], params[ps + 1]);
                linear::forward(&mut self.workers, n, in_features, out_features, inp(0), w, b, &mut y)
            }
            Op::Conv2d { .. } => {
                let geom = conv_geom(&node.op, in_shape(0), &node.shape);
                conv::forward(&mut self.workers, &geom, n, inp(0), params[ps], params[ps + 1], &mut y);
            }
            Op::GroupNorm { groups, channels, eps } => {
                let geom = norm::GroupNormGeom {
                    channels,
                    hw: node.shape.numel() / channels,
                    groups,
                    eps: eps as f64,
                };
                let mut stats = self.pool.take(n * groups * 2);
                let silu = self.fused_silu[id].is_some();
                let (gamma, beta) = (params[ps], params[ps + 1]);
                norm::forward(&mut self.workers, &geom, n, inp(0), gamma, beta, &mut y, &mut stats, silu);
                if train {
                    self.saved_stats[id] = Some(stats);
                } else {
                    self.pool.give(stats);
                }
            }
            Op::Silu => activation::silu_forward(inp(0), &mut y),
            Op::Add => elementwise::add(inp(0), inp(1), &mut y),
            Op::AddChannelBias => {
                let c = node.shape.channels().unwrap_or(1);
                elementwise::add_channel_bias(node.shape.numel() / c, inp(0), inp(1), &mut y)
            }
            Op::Concat => {
                let ins: Vec<&[T]> = (0..node.inputs.len()).map(inp).collect();
                let sizes: Vec<usize> = (0..node.inputs.len()).map(|k| in_shape(k).numel()).collect();
                elementwise::concat(&ins, &sizes, &mut y);
            }
            Op::UpsampleNearest { scale } => {
                let (c, h, w) = in_shape(0).as_image().expect("checked image");
                upsample::forward(n * c, h, w, scale, inp(0), &mut y);
            }
            Op::Attention { channels, heads } => {
                let geom =
                    attention::AttentionGeom { channels, heads, positions: node.shape.numel() / channels };
                attention::forward(&mut self.workers, &geom, n, inp(0), &mut y);
            }
        }
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
        for id in (0..self.graph.nodes.len()).rev() {
            // the input's own gradient stays for backward_input_grad
            if id == self.graph.input {
                continue;
            }
            if let Some(g) = self.grads[id].take() {
                let start = self.profile.as_ref().map(|_| Instant::now());
                self.backward_node(id, params, g, grads);
                self.record(id, start, false);
            }
            if let Some(s) = self.saved_stats[id].take() {
                self.pool.give(s);
            }
            for &i in &self.graph.nodes[id].inputs {
                if self.last_backward_reader[i] == Some(id) {
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

    fn backward_node(&mut self, id: NodeId, params: &[&[T]], mut g: Vec<T>, grads: &mut [&mut [T]]) {
        let n = self.batch;
        let node = &self.graph.nodes[id];
        let op = node.op.clone();
        let out_shape = node.shape.clone();
        let inputs = node.inputs.clone();
        let in_shapes: Vec<Shape> = inputs.iter().map(|&i| self.graph.nodes[i].shape.clone()).collect();
        let want: Vec<bool> = inputs.iter().map(|&i| self.requires_grad[i]).collect();
        let in_len = |k: usize| n * in_shapes[k].numel();
        let ps = self.param_start[id];
        match op {
            Op::Input { .. } | Op::Timestep | Op::TimestepEmbedding { .. } => self.pool.give(g),
            Op::Linear { in_features, out_features } => {
                let mut dx = want[0].then(|| self.pool.take(in_len(0)));
                let (dw, db) = two_mut(grads, ps);
                let x = Self::input(&self.values, inputs[0]);
                let w = params[ps];
                let dx_ = dx.as_deref_mut();
                linear::backward(&mut self.workers, n, in_features, out_features, x, w, &g, dx_, dw, db);
                self.pool.give(g);
                if let Some(dx) = dx {
                    self.accumulate(inputs[0], dx);
                }
            }
            Op::Conv2d { .. } => {
                let geom = conv_geom(&op, &in_shapes[0], &out_shape);
                let mut dx = want[0].then(|| self.pool.take(in_len(0)));
                let (dw, db) = two_mut(grads, ps);
                let x = Self::input(&self.values, inputs[0]);
                conv::backward(&mut self.workers, &geom, n, x, params[ps], &g, dx.as_deref_mut(), dw, db);
                self.pool.give(g);
                if let Some(dx) = dx {
                    self.accumulate(inputs[0], dx);
                }
            }
            Op::GroupNorm { .. } => self.backward_group_norm(id, params, g, grads, false),
            Op::Silu if self.fused_from[id].is_some() => {
                let norm_id = self.fused_from[id].expect("checked");
                self.backward_group_norm(norm_id, params, g, grads, true);
            }
            Op::Silu => {
                activation::silu_backward_in_place(Self::input(&self.values, inputs[0]), &mut g);
                self.accumulate(inputs[0], g);
            }
            Op::Add => {
                let mut copy = self.pool.take(g.len());
                copy.copy_from_slice(&g);
                self.accumulate(inputs[0], copy);
                self.accumulate(inputs[1], g);
            }
            Op::AddChannelBias => {
                let c = out_shape.channels().unwrap_or(1);
                let mut db = self.pool.take(n * c);
                elementwise::add_channel_bias_backward(out_shape.numel() / c, &g, &mut db);
                self.accumulate(inputs[1], db);
                self.accumulate(inputs[0], g);
            }
            Op::Concat => {
                let total = out_shape.numel();
                let mut offset = 0;
                for (k, &v) in inputs.iter().enumerate() {
                    let len = in_shapes[k].numel();
                    if want[k] {
                        let mut dx = self.pool.take(n * len);
                        elementwise::concat_backward(total, offset, len, &g, &mut dx);
                        self.accumulate(v, dx);
                    }
                    offset += len;
                }
                self.pool.give(g);
            }
            Op::UpsampleNearest { scale } => {
                let (c, h, w) = in_shapes[0].as_image().expect("checked image");
                let mut dx = self.pool.take(in_len(0));
                upsample::backward(n * c, h, w, scale, &g, &mut dx);
                self.pool.give(g);
                self.accumulate(inputs[0], dx);
            }
            Op::Attention { channels, heads } => {
                let geom =
                    attention::AttentionGeom { channels, heads, positions: out_shape.numel() / channels };
                let mut dx = self.pool.take(in_len(0));
                let x = Self::input(&self.values, inputs[0]);
                attention::backward(&mut self.workers, &geom, n, x, &g, &mut dx);
                self.pool.give(g);
                self.accumulate(inputs[0], dx);
            }
        }
    }
}

impl<T: Real> Engine<T> {
    /// GroupNorm node `id`'s backward; with `silu`, `g` is the gradient of the SiLU fused after it.
    fn backward_group_norm(
        &mut self,
        id: NodeId,
        params: &[&[T]],
        mut g: Vec<T>,
        grads: &mut [&mut [T]],
        silu: bool,
    ) {
        let n = self.batch;
        let node = &self.graph.nodes[id];
        let Op::GroupNorm { groups, channels, eps } = node.op else { unreachable!("a group norm node") };
        let geom =
            norm::GroupNormGeom { channels, hw: node.shape.numel() / channels, groups, eps: eps as f64 };
        let input = node.inputs[0];
        let ps = self.param_start[id];
        let mut dx = self.pool.take(g.len());
        let (dw, db) = two_mut(grads, ps);
        let x = Self::input(&self.values, input);
        let stats = self.saved_stats[id].as_deref().expect("group norm statistics saved");
        let (gamma, beta) = (params[ps], params[ps + 1]);
        norm::backward(&mut self.workers, &geom, n, x, gamma, beta, stats, &mut g, &mut dx, dw, db, silu);
        self.pool.give(g);
        self.accumulate(input, dx);
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

/// The gradients of a node's weight and bias (parameters `ps` and `ps + 1`).
fn two_mut<'a, T>(grads: &'a mut [&mut [T]], ps: usize) -> (&'a mut [T], &'a mut [T]) {
    let (a, b) = grads[ps..ps + 2].split_at_mut(1);
    (&mut *a[0], &mut *b[0])
}

fn conv_geom(op: &Op, input: &Shape, output: &Shape) -> conv::ConvGeom {
    let Op::Conv2d { in_channels, out_channels, kernel, stride, padding } = *op else {
        unreachable!("conv_geom on a non-conv op")
    };
    let (_, h, w) = input.as_image().expect("checked image");
    let (_, ho, wo) = output.as_image().expect("checked image");
    conv::ConvGeom { cin: in_channels, cout: out_channels, k: kernel, stride, pad: padding, h, w, ho, wo }
}
