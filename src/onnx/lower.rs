//! Lowering of each primitive [`Op`] to ONNX nodes.
//!
//! Forms are chosen for onnxruntime's CPU speed: GroupNorm as Reshape -> InstanceNormalization ->
//! Reshape -> Mul -> Add (about 2x faster there than GroupNormalization), SiLU as x * Sigmoid(x)
//! (onnxruntime fuses it), attention as MatMul/Softmax (Transpose+MatMul fuse into FusedMatMul).
//! Every shape that depends on the batch or the image size is taken from the tensor at run time,
//! so N, H and W stay dynamic. The ONNX node carrying the op's result is named exactly like the
//! primitive node (`down1.conv`); helper nodes get `<node>/<step>`.

use std::collections::HashMap;

use ndarray::ArrayD;

use super::builder::{attribute, tensor_f32, Attr, GraphBuilder};
use crate::graph::{Node, Op};
use crate::ops::{
    attention::Attention, conv2d::Conv2d, group_norm::GroupNorm, linear::Linear,
    timestep_embedding::TimestepEmbedding, upsample_nearest::UpsampleNearest,
};

/// Lowers nodes one by one into a [`GraphBuilder`].
pub struct Lowerer<'p> {
    pub b: GraphBuilder,
    params: HashMap<&'p str, &'p ArrayD<f32>>,
    /// value name -> name of its `Shape` value, computed once per tensor.
    shapes: HashMap<String, String>,
}

impl<'p> Lowerer<'p> {
    pub fn new(params: HashMap<&'p str, &'p ArrayD<f32>>) -> Self {
        Lowerer { b: GraphBuilder::default(), params, shapes: HashMap::new() }
    }

    /// Adds the parameter `<node>.<param>` as an initializer, reshaped to `dims` (same data).
    fn weight(&mut self, node: &Node, param: &str, dims: &[usize]) -> String {
        let name = format!("{}.{param}", node.name);
        let t =
            self.params.get(name.as_str()).unwrap_or_else(|| panic!("parameter {name} was checked to exist"));
        let data = t.as_standard_layout();
        self.b.initializer(tensor_f32(&name, dims, data.as_slice().expect("standard layout")));
        name
    }

    fn shape_of(&mut self, value: &str) -> String {
        if let Some(s) = self.shapes.get(value) {
            return s.clone();
        }
        let out = format!("{value}/shape");
        self.b.node("Shape", &out, &[value], &[&out], vec![]);
        self.shapes.insert(value.to_string(), out.clone());
        out
    }

    /// Emits the ONNX nodes computing `node` from the values `ins` into the value `out`.
    pub fn lower(&mut self, node: &Node, ins: &[&str], out: &str) {
        let name = node.name.as_str();
        let step = |s: &str| format!("{name}/{s}");
        match node.op {
            Op::Input(_) | Op::Timestep(_) => unreachable!("graph inputs are not lowered"),
            Op::TimestepEmbedding(TimestepEmbedding { dim }) => {
                // Arguments in f64: t * freq reaches ~1000 rad, where f32 rounding would already
                // move sin/cos by ~1e-4.
                let half = dim / 2;
                let freqs: Vec<f64> =
                    (0..half).map(|i| (-(10000f64.ln()) * i as f64 / half as f64).exp()).collect();
                let freqs = self.b.const_f64(&format!("timestep_freqs{half}"), &[1, half], &freqs);
                let axes = self.b.const_i64(&[1]);
                let (t64, t2, arg, sin, cos, cat) =
                    (step("cast"), step("unsqueeze"), step("arg"), step("sin"), step("cos"), step("concat"));
                self.b.node("Cast", &t64, &[ins[0]], &[&t64], vec![attribute("to", Attr::Int(11))]);
                self.b.node("Unsqueeze", &t2, &[&t64, &axes], &[&t2], vec![]);
                self.b.node("Mul", &arg, &[&t2, &freqs], &[&arg], vec![]);
                self.b.node("Sin", &sin, &[&arg], &[&sin], vec![]);
                self.b.node("Cos", &cos, &[&arg], &[&cos], vec![]);
                self.b.node("Concat", &cat, &[&sin, &cos], &[&cat], vec![attribute("axis", Attr::Int(1))]);
                self.b.node("Cast", name, &[&cat], &[out], vec![attribute("to", Attr::Int(1))]);
            }
            Op::Linear(Linear { in_features, out_features }) => {
                let w = self.weight(node, "weight", &[out_features, in_features]);
                let bias = self.weight(node, "bias", &[out_features]);
                self.b.node(
                    "Gemm",
                    name,
                    &[ins[0], &w, &bias],
                    &[out],
                    vec![attribute("transB", Attr::Int(1))],
                );
            }
            Op::Conv2d(Conv2d { in_channels, out_channels, kernel, stride, padding }) => {
                let w = self.weight(node, "weight", &[out_channels, in_channels, kernel, kernel]);
                let bias = self.weight(node, "bias", &[out_channels]);
                let (k, s, p) = (kernel as i64, stride as i64, padding as i64);
                self.b.node(
                    "Conv",
                    name,
                    &[ins[0], &w, &bias],
                    &[out],
                    vec![
                        attribute("kernel_shape", Attr::Ints(&[k, k])),
                        attribute("strides", Attr::Ints(&[s, s])),
                        attribute("pads", Attr::Ints(&[p, p, p, p])),
                    ],
                );
            }
            Op::GroupNorm(GroupNorm { groups, channels, eps }) => {
                let eps_attr = || vec![attribute("epsilon", Attr::Float(eps))];
                if groups == channels {
                    // One channel per group is exactly instance norm, affine included.
                    let w = self.weight(node, "weight", &[channels]);
                    let bias = self.weight(node, "bias", &[channels]);
                    self.b.node("InstanceNormalization", name, &[ins[0], &w, &bias], &[out], eps_attr());
                    return;
                }
                // Normalise each group as one instance-norm "channel", then the per-channel affine.
                let grouped = self.b.const_i64(&[0, groups as i64, -1]);
                let ones = self.b.const_f32(&format!("ones{groups}"), &[groups], &vec![1.0; groups]);
                let zeros = self.b.const_f32(&format!("zeros{groups}"), &[groups], &vec![0.0; groups]);
                let shape = self.shape_of(ins[0]);
                let w = self.weight(node, "weight", &[channels, 1, 1]);
                let bias = self.weight(node, "bias", &[channels, 1, 1]);
                let (r, n, back, scaled) = (step("group"), step("normalize"), step("ungroup"), step("scale"));
                self.b.node("Reshape", &r, &[ins[0], &grouped], &[&r], vec![]);
                self.b.node("InstanceNormalization", &n, &[&r, &ones, &zeros], &[&n], eps_attr());
                self.b.node("Reshape", &back, &[&n, &shape], &[&back], vec![]);
                self.b.node("Mul", &scaled, &[&back, &w], &[&scaled], vec![]);
                self.b.node("Add", name, &[&scaled, &bias], &[out], vec![]);
            }
            Op::Silu(_) => {
                let sig = step("sigmoid");
                self.b.node("Sigmoid", &sig, &[ins[0]], &[&sig], vec![]);
                self.b.node("Mul", name, &[ins[0], &sig], &[out], vec![]);
            }
            Op::Add(_) => self.b.node("Add", name, &[ins[0], ins[1]], &[out], vec![]),
            Op::AddChannelBias(_) => {
                // [N, C] -> [N, C, 1, 1], broadcast over H, W.
                let axes = self.b.const_i64(&[2, 3]);
                let u = step("unsqueeze");
                self.b.node("Unsqueeze", &u, &[ins[1], &axes], &[&u], vec![]);
                self.b.node("Add", name, &[ins[0], &u], &[out], vec![]);
            }
            Op::Concat(_) => self.b.node("Concat", name, ins, &[out], vec![attribute("axis", Attr::Int(1))]),
            Op::UpsampleNearest(UpsampleNearest { scale }) => {
                // asymmetric + floor: output pixel i reads input floor(i / scale), an exact repeat.
                let s = scale as f32;
                let scales = self.b.const_f32(&format!("scales{scale}"), &[4], &[1.0, 1.0, s, s]);
                self.b.node(
                    "Resize",
                    name,
                    &[ins[0], "", &scales],
                    &[out],
                    vec![
                        attribute("mode", Attr::Str("nearest")),
                        attribute("coordinate_transformation_mode", Attr::Str("asymmetric")),
                        attribute("nearest_mode", Attr::Str("floor")),
                    ],
                );
            }
            Op::Attention(Attention { channels, heads }) => {
                self.attention(node, ins[0], out, channels, heads)
            }
        }
    }

    /// qkv [N, 3C, H, W] -> [N, C, H, W]; see [`Op::Attention`] for the channel layout.
    fn attention(&mut self, node: &Node, qkv: &str, out: &str, channels: usize, heads: usize) {
        let name = node.name.as_str();
        let step = |s: &str| format!("{name}/{s}");
        let d = channels / heads;
        let (h, d_i) = (heads as i64, d as i64);
        // [N, 3C, H, W] -> [N, 3*heads, d, P]: q heads first, then k heads, then v heads.
        let split_heads = self.b.const_i64(&[0, 3 * h, d_i, -1]);
        let split = self.b.const_i64(&[h, h, h]);
        let scale = self.b.const_f32(&format!("attn_scale{d}"), &[], &[1.0 / (d as f32).sqrt()]);
        let (r, q, k, v) = (step("heads"), step("q"), step("k"), step("v"));
        let (qs, qt, scores, probs, pt, o) =
            (step("q_scaled"), step("q_t"), step("scores"), step("softmax"), step("probs_t"), step("out"));
        self.b.node("Reshape", &r, &[qkv, &split_heads], &[&r], vec![]);
        self.b.node(
            "Split",
            &step("split"),
            &[&r, &split],
            &[&q, &k, &v],
            vec![attribute("axis", Attr::Int(1))],
        );
        self.b.node("Mul", &qs, &[&q, &scale], &[&qs], vec![]);
        // scores[p, j] = sum_c q[c, p] k[c, j]
        self.b.node("Transpose", &qt, &[&qs], &[&qt], vec![attribute("perm", Attr::Ints(&[0, 1, 3, 2]))]);
        self.b.node("MatMul", &scores, &[&qt, &k], &[&scores], vec![]);
        self.b.node("Softmax", &probs, &[&scores], &[&probs], vec![attribute("axis", Attr::Int(-1))]);
        // out[c, p] = sum_j v[c, j] probs[p, j]
        self.b.node("Transpose", &pt, &[&probs], &[&pt], vec![attribute("perm", Attr::Ints(&[0, 1, 3, 2]))]);
        self.b.node("MatMul", &o, &[&v, &pt], &[&o], vec![]);
        // Back to [N, C, H, W], H and W read from the input at run time.
        let shape = self.shape_of(qkv);
        let (starts, ends) = (self.b.const_i64(&[2]), self.b.const_i64(&[4]));
        let keep_n_c = self.b.const_i64(&[0, channels as i64]);
        let (hw, target) = (step("hw"), step("out_shape"));
        self.b.node("Slice", &hw, &[&shape, &starts, &ends], &[&hw], vec![]);
        self.b.node("Concat", &target, &[&keep_n_c, &hw], &[&target], vec![attribute("axis", Attr::Int(0))]);
        self.b.node("Reshape", name, &[&o, &target], &[out], vec![]);
    }
}
