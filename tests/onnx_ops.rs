//! Each primitive op's ONNX lowering, run in onnxruntime, against a naive reference loop written
//! here from the op's documented semantics. These localise a lowering bug to one op.

use crate::onnx_common;

use mdc::graph::{Graph, PrimitiveGraphBuilder};

use mdc::interp::Executor;
use mdc::ops::{
    Add, AddChannelBias, Attention, Concat, Conv2d, ConvTranspose2d, GroupNorm, Input, Linear, Op,
    ScaleChannels, Silu, Timestep, TimestepEmbedding, UpsampleNearest,
};
use mdc::params::Params;
use ndarray::{Array4, ArrayD};
use onnx_common::*;

const TOL: f32 = 1e-4;

/// Exports `graph` with `params`, runs x and t through onnxruntime and compares with `expected`.
fn check(name: &str, graph: &Graph, params: &Params, x: &Array4<f32>, t: &[f32], expected: &Array4<f32>) {
    let dir = tempfile::tempdir().unwrap();
    let path = export(graph, params, dir.path(), name);
    let mut model = open(&path);
    let got = model.forward(x.view(), ndarray::ArrayView1::from(t)).unwrap();
    let diff = max_abs_diff(&got, expected);
    assert!(diff <= TOL, "{name}: onnxruntime differs from the reference by {diff} (> {TOL})");
}

fn param<'a>(p: &'a Params, name: &str) -> &'a ArrayD<f32> {
    p.get(name).unwrap_or_else(|| panic!("no parameter {name}"))
}

// ---- reference implementations (f64 accumulation) ----

fn conv_ref(x: &Array4<f32>, w: &ArrayD<f32>, b: &ArrayD<f32>, stride: usize, pad: usize) -> Array4<f32> {
    let (n, ci, h, wd) = x.dim();
    let (co, k) = (w.shape()[0], w.shape()[2]);
    let (oh, ow) = ((h + 2 * pad - k) / stride + 1, (wd + 2 * pad - k) / stride + 1);
    Array4::from_shape_fn((n, co, oh, ow), |(b_, o, i, j)| {
        let mut acc = b[[o]] as f64;
        for c in 0..ci {
            for ki in 0..k {
                for kj in 0..k {
                    let (y, xx) = (
                        (i * stride + ki) as isize - pad as isize,
                        (j * stride + kj) as isize - pad as isize,
                    );
                    if y >= 0 && xx >= 0 && (y as usize) < h && (xx as usize) < wd {
                        acc += w[[o, c, ki, kj]] as f64 * x[[b_, c, y as usize, xx as usize]] as f64;
                    }
                }
            }
        }
        acc as f32
    })
}

/// PyTorch's ConvTranspose2d: every input pixel adds its weight patch [Cout, k, k] at
/// (iy * stride - pad, ix * stride - pad); weight [Cin, Cout, k, k].
fn conv_transpose_ref(
    x: &Array4<f32>,
    w: &ArrayD<f32>,
    b: &ArrayD<f32>,
    stride: usize,
    pad: usize,
) -> Array4<f32> {
    let (n, _, h, wd) = x.dim();
    let (co, k) = (w.shape()[1], w.shape()[2]);
    let (oh, ow) = ((h - 1) * stride + k - 2 * pad, (wd - 1) * stride + k - 2 * pad);
    let mut acc = Array4::from_shape_fn((n, co, oh, ow), |(_, o, _, _)| b[[o]] as f64);
    for ((b_, c, i, j), &xv) in x.indexed_iter() {
        for o in 0..co {
            for ki in 0..k {
                for kj in 0..k {
                    let (y, xx) = (
                        (i * stride + ki) as isize - pad as isize,
                        (j * stride + kj) as isize - pad as isize,
                    );
                    if y >= 0 && xx >= 0 && (y as usize) < oh && (xx as usize) < ow {
                        acc[[b_, o, y as usize, xx as usize]] += w[[c, o, ki, kj]] as f64 * xv as f64;
                    }
                }
            }
        }
    }
    acc.mapv(|v| v as f32)
}

fn group_norm_ref(x: &Array4<f32>, groups: usize, eps: f32, w: &ArrayD<f32>, b: &ArrayD<f32>) -> Array4<f32> {
    let (n, c, h, wd) = x.dim();
    let cg = c / groups;
    let mut out = Array4::zeros(x.raw_dim());
    for b_ in 0..n {
        for g in 0..groups {
            let vals: Vec<f64> = (g * cg..(g + 1) * cg)
                .flat_map(|ch| (0..h).flat_map(move |i| (0..wd).map(move |j| (ch, i, j))))
                .map(|(ch, i, j)| x[[b_, ch, i, j]] as f64)
                .collect();
            let mean = vals.iter().sum::<f64>() / vals.len() as f64;
            let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / vals.len() as f64;
            for ch in g * cg..(g + 1) * cg {
                for i in 0..h {
                    for j in 0..wd {
                        let norm = (x[[b_, ch, i, j]] as f64 - mean) / (var + eps as f64).sqrt();
                        out[[b_, ch, i, j]] = (norm * w[[ch]] as f64 + b[[ch]] as f64) as f32;
                    }
                }
            }
        }
    }
    out
}

fn attention_ref(qkv: &Array4<f32>, channels: usize, heads: usize) -> Array4<f32> {
    let (n, _, h, w) = qkv.dim();
    let (d, p) = (channels / heads, h * w);
    let at = |b: usize, ch: usize, pos: usize| qkv[[b, ch, pos / w, pos % w]] as f64;
    let mut out = Array4::zeros((n, channels, h, w));
    for b in 0..n {
        for head in 0..heads {
            let (q0, k0, v0) = (head * d, channels + head * d, 2 * channels + head * d);
            for i in 0..p {
                let scores: Vec<f64> = (0..p)
                    .map(|j| {
                        (0..d).map(|c| at(b, q0 + c, i) * at(b, k0 + c, j)).sum::<f64>() / (d as f64).sqrt()
                    })
                    .collect();
                let max = scores.iter().cloned().fold(f64::MIN, f64::max);
                let e: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let z: f64 = e.iter().sum();
                for c in 0..d {
                    let v: f64 = (0..p).map(|j| e[j] / z * at(b, v0 + c, j)).sum();
                    out[[b, head * d + c, i / w, i % w]] = v as f32;
                }
            }
        }
    }
    out
}

fn embedding_ref(t: f32, dim: usize) -> Vec<f64> {
    let half = dim / 2;
    let freqs: Vec<f64> = (0..half).map(|i| (-(10000f64.ln()) * i as f64 / half as f64).exp()).collect();
    let sin = freqs.iter().map(|f| (t as f64 * f).sin());
    let cos = freqs.iter().map(|f| (t as f64 * f).cos());
    sin.chain(cos).collect()
}

fn silu(v: f32) -> f32 {
    v / (1.0 + (-v).exp())
}

fn input(b: &mut PrimitiveGraphBuilder, c: usize, h: usize, w: usize) -> usize {
    b.add("x", "x", Input { channels: c, height: h, width: w }, &[]).unwrap()
}

// ---- tests ----

#[test]
fn conv2d_with_stride_and_padding() {
    if !onnxruntime_available("conv2d_with_stride_and_padding") {
        return;
    }
    for (k, stride, pad, h, w) in
        [(3, 1, 1, 6, 5), (3, 2, 1, 7, 6), (1, 1, 0, 4, 4), (5, 2, 2, 9, 9), (3, 1, 0, 5, 5)]
    {
        let mut b = PrimitiveGraphBuilder::new();
        let x = input(&mut b, 3, h, w);
        let conv = Conv2d { in_channels: 3, out_channels: 4, kernel: k, stride, padding: pad };
        let y = b.add("blk.conv", "blk", conv, &[x]).unwrap();
        let g = b.finish(y);
        let p = random_params(&g, 7);
        let xs = random_images(2, 3, h, w, 1);
        let expected = conv_ref(&xs, param(&p, "blk.conv.weight"), param(&p, "blk.conv.bias"), stride, pad);
        check(&format!("conv_k{k}_s{stride}_p{pad}"), &g, &p, &xs, &[1.0, 2.0], &expected);
    }
}

/// The interpreter's forward and onnxruntime's ConvTranspose against the reference loop:
/// strides 1 and 2, paddings 0 and 1, kernels 2 to 4, non-square inputs.
#[test]
fn conv_transpose_with_stride_and_padding() {
    let cases = [
        (4, 2, 1, 3, 5),
        (2, 2, 0, 4, 3),
        (3, 2, 1, 4, 6),
        (3, 1, 1, 5, 4),
        (3, 1, 0, 2, 3),
        (4, 1, 1, 3, 3),
    ];
    let ort = onnxruntime_available("conv_transpose_with_stride_and_padding");
    for (k, stride, pad, h, w) in cases {
        let mut b = PrimitiveGraphBuilder::new();
        let x = input(&mut b, 3, h, w);
        let op = ConvTranspose2d { in_channels: 3, out_channels: 4, kernel: k, stride, padding: pad };
        let y = b.add("blk.up", "blk", op, &[x]).unwrap();
        let g = b.finish(y);
        let p = random_params(&g, 8);
        let xs = random_images(2, 3, h, w, 2);
        let expected =
            conv_transpose_ref(&xs, param(&p, "blk.up.weight"), param(&p, "blk.up.bias"), stride, pad);
        let t = [1.0, 2.0];
        let interp = Executor::new(g.clone()).forward(&p, xs.view(), ndarray::ArrayView1::from(&t[..]));
        let diff = max_abs_diff(&interp, &expected);
        assert!(diff <= TOL, "k{k} s{stride} p{pad}: the interpreter differs from the reference by {diff}");
        if ort {
            check(&format!("conv_transpose_k{k}_s{stride}_p{pad}"), &g, &p, &xs, &t, &expected);
        }
    }
}

#[test]
fn group_norm_all_group_counts() {
    if !onnxruntime_available("group_norm_all_group_counts") {
        return;
    }
    // groups 1 (layer-norm-like), 4, and 8 = channels (the instance-norm shortcut).
    for groups in [1, 4, 8] {
        let mut b = PrimitiveGraphBuilder::new();
        let x = input(&mut b, 8, 5, 3);
        let y = b.add("n", "n", GroupNorm { groups, channels: 8, eps: 1e-5 }, &[x]).unwrap();
        let g = b.finish(y);
        let p = random_params(&g, 3);
        // Offset and scaled input so that the mean and variance matter.
        let xs = random_images(3, 8, 5, 3, 2).mapv(|v| 3.0 * v + 1.5);
        let expected = group_norm_ref(&xs, groups, 1e-5, param(&p, "n.weight"), param(&p, "n.bias"));
        check(&format!("group_norm_{groups}"), &g, &p, &xs, &[0.0, 1.0, 2.0], &expected);
    }
}

#[test]
fn silu_add_concat() {
    if !onnxruntime_available("silu_add_concat") {
        return;
    }
    let mut b = PrimitiveGraphBuilder::new();
    let x = input(&mut b, 2, 3, 4);
    let s = b.add("s", "s", Silu, &[x]).unwrap();
    let a = b.add("a", "a", Add, &[s, x]).unwrap();
    let c = b.add("c", "c", Concat, &[a, x, s]).unwrap();
    let g = b.finish(c);
    let p = Params::init(&g, 0);
    let xs = random_images(2, 2, 3, 4, 5).mapv(|v| 4.0 * v);
    let expected = Array4::from_shape_fn((2, 6, 3, 4), |(n, ch, i, j)| {
        let v = xs[[n, ch % 2, i, j]];
        match ch / 2 {
            0 => silu(v) + v,
            1 => v,
            _ => silu(v),
        }
    });
    check("silu_add_concat", &g, &p, &xs, &[0.0, 0.0], &expected);
}

#[test]
fn upsample_nearest_repeats() {
    if !onnxruntime_available("upsample_nearest_repeats") {
        return;
    }
    for scale in [2, 3] {
        let mut b = PrimitiveGraphBuilder::new();
        let x = input(&mut b, 3, 4, 5);
        let y = b.add("up", "up", UpsampleNearest { scale }, &[x]).unwrap();
        let g = b.finish(y);
        let xs = random_images(2, 3, 4, 5, 9);
        let expected = Array4::from_shape_fn((2, 3, 4 * scale, 5 * scale), |(n, c, i, j)| {
            xs[[n, c, i / scale, j / scale]]
        });
        check(&format!("upsample_{scale}"), &g, &Params::init(&g, 0), &xs, &[0.0, 0.0], &expected);
    }
}

#[test]
fn attention_heads_and_layout() {
    if !onnxruntime_available("attention_heads_and_layout") {
        return;
    }
    for (heads, h, w) in [(1, 3, 3), (2, 4, 3), (4, 2, 5)] {
        let channels = 8;
        let mut b = PrimitiveGraphBuilder::new();
        let x = input(&mut b, 3 * channels, h, w);
        let y = b.add("att.attn", "att", Attention { channels, heads }, &[x]).unwrap();
        let g = b.finish(y);
        let xs = random_images(3, 3 * channels, h, w, 11).mapv(|v| 1.5 * v);
        let expected = attention_ref(&xs, channels, heads);
        check(&format!("attention_{heads}"), &g, &Params::init(&g, 0), &xs, &[0.0, 1.0, 2.0], &expected);
    }
}

/// x [D, 2, 1] combined per channel with Linear(TimestepEmbedding(t)) by `op` (the bias or the
/// FiLM scale), against `reference(x, linear)`: embedding, linear and the channel op together.
fn embedding_linear_then<O: Into<Op>>(name: &str, op: O, reference: fn(f64, f64) -> f64) {
    let (dim, out) = (16, 6);
    let mut b = PrimitiveGraphBuilder::new();
    let x = input(&mut b, out, 2, 1);
    let t = b.add("t", "t", Timestep, &[]).unwrap();
    let e = b.add("time.embed", "time", TimestepEmbedding { dim }, &[t]).unwrap();
    let l = b.add("time.linear", "time", Linear { in_features: dim, out_features: out }, &[e]).unwrap();
    let y = b.add("channels", "channels", op, &[x, l]).unwrap();
    let g = b.finish(y);
    let p = random_params(&g, 4);
    let ts = timesteps(4, 8);
    let xs = random_images(4, out, 2, 1, 6);
    let (w, bias) = (param(&p, "time.linear.weight"), param(&p, "time.linear.bias"));
    let expected = Array4::from_shape_fn((4, out, 2, 1), |(n, o, i, j)| {
        let emb = embedding_ref(ts[n], dim);
        let lin: f64 = bias[[o]] as f64 + (0..dim).map(|k| w[[o, k]] as f64 * emb[k]).sum::<f64>();
        reference(xs[[n, o, i, j]] as f64, lin) as f32
    });
    check(name, &g, &p, &xs, ts.as_slice().unwrap(), &expected);
}

#[test]
fn timestep_embedding_linear_channel_bias() {
    if !onnxruntime_available("timestep_embedding_linear_channel_bias") {
        return;
    }
    embedding_linear_then("embedding_linear_bias", AddChannelBias, |x, lin| x + lin);
}

/// The FiLM scale of a `film = 1` resblock: x (1 + Linear(t)).
#[test]
fn timestep_embedding_linear_channel_scale() {
    if !onnxruntime_available("timestep_embedding_linear_channel_scale") {
        return;
    }
    embedding_linear_then("embedding_linear_scale", ScaleChannels, |x, lin| x * (1.0 + lin));
}

/// Batch and image size are dynamic: one export runs other batch sizes and (for a fully
/// convolutional graph) other image sizes.
#[test]
fn batch_and_image_size_are_dynamic() {
    if !onnxruntime_available("batch_and_image_size_are_dynamic") {
        return;
    }
    let mut b = PrimitiveGraphBuilder::new();
    let x = input(&mut b, 2, 4, 4);
    let c = b
        .add("c", "c", Conv2d { in_channels: 2, out_channels: 6, kernel: 3, stride: 1, padding: 1 }, &[x])
        .unwrap();
    let n = b.add("n", "n", GroupNorm { groups: 2, channels: 6, eps: 1e-5 }, &[c]).unwrap();
    let a = b.add("a", "a", Attention { channels: 2, heads: 2 }, &[n]).unwrap();
    let g = b.finish(a);
    let p = random_params(&g, 1);
    let dir = tempfile::tempdir().unwrap();
    let mut model = open(&export(&g, &p, dir.path(), "dynamic"));
    for (batch, h, w) in [(1, 4, 4), (5, 4, 4), (2, 6, 3)] {
        let xs = random_images(batch, 2, h, w, 3);
        let conv = conv_ref(&xs, param(&p, "c.weight"), param(&p, "c.bias"), 1, 1);
        let norm = group_norm_ref(&conv, 2, 1e-5, param(&p, "n.weight"), param(&p, "n.bias"));
        let expected = attention_ref(&norm, 2, 2);
        let t = vec![0.0; batch];
        let got = model.forward(xs.view(), ndarray::ArrayView1::from(&t[..])).unwrap();
        let diff = max_abs_diff(&got, &expected);
        assert!(diff <= TOL, "batch {batch}, {h}x{w}: differs by {diff}");
    }
}
