//! Each op's backward lowering ([`mdc::ops::PrimitiveOp::lower_backward`]), run in onnxruntime's
//! CPU provider through the gradient graph of `mdc::train_step::compile_gradients`, against the
//! interpreter's gradients (the f64 engine, itself checked against finite differences in
//! interp_grad.rs): every parameter's gradient and the images' gradient within 1e-5 relative
//! (L2 per tensor).

use crate::common;
use crate::onnx_common;

use std::collections::HashMap;

use common::graph_of;
use mdc::base::rng::Rng;
use mdc::check::blocks::{self, mini_unet};
use mdc::graph::Graph;
use mdc::interp::Engine;
use mdc::ops::{
    Add, AddChannelBias, Attention, Concat, ConvTranspose2d, Embedding, Label, Linear, ScaleChannels, Silu,
    UpsampleNearest,
};
use mdc::params::Params;
use mdc::train_step::{compile_gradients, names};
use ort::session::Session;
use ort::value::{DynValue, Tensor};
use prost::Message;

const RTOL: f64 = 1e-5;

/// Runs the serialised `model` on the CPU provider: every float output, flat.
pub fn run_cpu(model: &[u8], inputs: Vec<(&str, DynValue)>) -> HashMap<String, Vec<f32>> {
    let env = mdc::runtime::discover::environment().expect("onnxruntime");
    let mut session =
        Session::builder(env).unwrap().commit_from_memory(model).expect("onnxruntime loads the graph");
    let names: Vec<String> = session.outputs().iter().map(|o| o.name().to_string()).collect();
    let outputs = session.run(inputs).expect("onnxruntime runs the graph");
    names
        .into_iter()
        .map(|n| (n.clone(), outputs[n.as_str()].try_extract_tensor::<f32>().unwrap().1.to_vec()))
        .collect()
}

/// ||a - b|| / ||b|| (b the reference), with a floor so all-zero gradients compare absolutely.
pub fn relative_l2(a: &[f32], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    let diff: f64 = a.iter().zip(b).map(|(&x, &y)| (x as f64 - y).powi(2)).sum::<f64>().sqrt();
    let norm: f64 = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    diff / norm.max(1e-6)
}

/// Compares the lowered gradients of `sum(dy * graph(x, t, y))` with the f64 interpreter's.
fn check(what: &str, graph: Graph, batch: usize, seed: u64) {
    if !onnx_common::onnxruntime_available(what) {
        return;
    }
    let names_: Vec<String> = graph.params().into_iter().map(|(n, _)| n).collect();
    let init = Params::init(&graph, seed);
    let mut rng = Rng::new(seed ^ 0xabc);
    // f32 values, so both engines read exactly the same numbers.
    let mut normals = |n: usize| -> Vec<f64> { (0..n).map(|_| rng.normal() as f32 as f64).collect() };
    let params: Vec<Vec<f64>> = init
        .tensors
        .iter()
        .map(|t| {
            let jitter = normals(t.len());
            t.iter().zip(jitter).map(|(&v, j)| (v as f64 + 0.2 * j) as f32 as f64).collect()
        })
        .collect();
    let x = normals(batch * graph.input_shape().numel());
    let dy = normals(batch * graph.output_shape().numel());
    let t: Vec<f64> = (0..batch).map(|i| ((i * 397 + seed as usize * 13) % 1000) as f64).collect();
    let y: Option<Vec<f64>> =
        graph.classes().map(|c| (0..batch).map(|i| ((i * 2) % (c + 1)) as f64).collect());

    let mut engine = Engine::<f64>::new(graph.clone()).with_input_grad();
    let views: Vec<&[f64]> = params.iter().map(Vec::as_slice).collect();
    engine.forward(&views, &x, &t, y.as_deref(), batch, true);
    let mut grads: Vec<Vec<f64>> = params.iter().map(|v| vec![0.0; v.len()]).collect();
    let mut gviews: Vec<&mut [f64]> = grads.iter_mut().map(Vec::as_mut_slice).collect();
    let dx = engine.backward_input_grad(&views, &dy, &mut gviews).expect("input gradient requested");

    let model = compile_gradients(&graph).expect("compiles").encode_to_vec();
    let f32s = |v: &[f64]| v.iter().map(|&a| a as f32).collect::<Vec<f32>>();
    let (c, h, w) = graph.input_shape().as_image().unwrap();
    let out_dims: Vec<usize> = std::iter::once(batch).chain(graph.output_shape().0.iter().copied()).collect();
    let mut inputs: Vec<(&str, DynValue)> = vec![];
    if !params.is_empty() {
        let flat: Vec<f32> = params.iter().flat_map(|p| f32s(p)).collect();
        inputs.push((names::PARAMS, Tensor::from_array(([flat.len()], flat)).unwrap().into_dyn()));
    }
    inputs.push(("x", Tensor::from_array(([batch, c, h, w], f32s(&x))).unwrap().into_dyn()));
    inputs.push(("t", Tensor::from_array(([batch], f32s(&t))).unwrap().into_dyn()));
    if let Some(y) = &y {
        let y: Vec<i64> = y.iter().map(|&v| v as i64).collect();
        inputs.push(("y", Tensor::from_array(([batch], y)).unwrap().into_dyn()));
    }
    inputs.push((names::DY, Tensor::from_array((out_dims, f32s(&dy))).unwrap().into_dyn()));
    let got = run_cpu(&model, inputs);

    let mut offset = 0;
    for (name, want) in names_.iter().zip(&grads) {
        let part = &got[names::GRADS][offset..offset + want.len()];
        offset += want.len();
        let r = relative_l2(part, want);
        assert!(
            r <= RTOL,
            "{what}: d/d {name} differs from the interpreter's by {r:.2e} relative (> {RTOL})"
        );
    }
    let r = relative_l2(&got[names::DX], &dx);
    assert!(r <= RTOL, "{what}: d/dx differs from the interpreter's by {r:.2e} relative (> {RTOL})");
}

#[test]
fn conv_backward_lowering_for_strides_paddings_and_kernels() {
    for (i, &(cin, cout, k, s, p, h, w)) in common::CONV_CASES.iter().enumerate() {
        let g = graph_of(cin, h, w, |b, x, _| blocks::conv(b, "conv", "conv", x, cout, k, s, p).unwrap());
        check(&format!("conv case {i}"), g, 2, 10 + i as u64);
    }
}

#[test]
fn conv_transpose_backward_lowering() {
    for (i, &(cin, cout, k, s, p, h, w)) in common::CONV_TRANSPOSE_CASES.iter().enumerate() {
        let g = graph_of(cin, h, w, |b, x, _| {
            let op =
                ConvTranspose2d { in_channels: cin, out_channels: cout, kernel: k, stride: s, padding: p };
            b.add("up", "up", op, &[x]).unwrap()
        });
        check(&format!("conv_transpose case {i}"), g, 2, 100 + i as u64);
    }
}

#[test]
fn group_norm_and_silu_backward_lowering() {
    for (i, groups) in [1, 2, 4, 8].into_iter().enumerate() {
        let g = graph_of(8, 3, 5, |b, x, _| {
            let n = blocks::group_norm(b, "norm", "norm", x, groups).unwrap();
            b.add("silu", "silu", Silu, &[n]).unwrap()
        });
        check(&format!("group_norm {groups} groups"), g, 2, 20 + i as u64);
    }
}

#[test]
fn attention_backward_lowering() {
    for (i, heads) in [1, 2, 4].into_iter().enumerate() {
        let g = graph_of(12, 3, 4, |b, x, _| {
            b.add("attn", "attn", Attention { channels: 4, heads }, &[x]).unwrap()
        });
        check(&format!("attention {heads} heads"), g, 2, 30 + i as u64);
    }
    let g = graph_of(8, 4, 3, |b, x, _| blocks::attention(b, "attn", x, 2, 2).unwrap());
    check("attention block", g, 2, 35);
}

#[test]
fn embedding_and_scale_backward_lowering_through_a_conditioned_resblock() {
    for film in [false, true] {
        let g = graph_of(4, 3, 3, |b, x, t| {
            let y = b.add("y", "y", Label { classes: 3, hide_below: 300 }, &[]).unwrap();
            let e = b.add("label", "label", Embedding { rows: 4, features: 6 }, &[y]).unwrap();
            let temb = blocks::time_mlp(b, "time", t, 4, 6).unwrap();
            let cond = b.add("cond", "cond", Add, &[temb, e]).unwrap();
            blocks::resblock(b, "res", x, cond, 4, 2, film).unwrap()
        });
        check(&format!("conditioned resblock, film {film}"), g, 5, 44);
    }
}

#[test]
fn elementwise_upsample_concat_and_linear_backward_lowering() {
    let g = graph_of(3, 4, 5, |b, x, _| {
        let c = blocks::conv(b, "conv", "conv", x, 3, 3, 1, 1).unwrap();
        b.add("add", "add", Add, &[c, x]).unwrap()
    });
    check("add accumulating into x", g, 2, 41);
    for (i, scale) in [2, 3].into_iter().enumerate() {
        let g = graph_of(2, 3, 4, |b, x, _| b.add("up", "up", UpsampleNearest { scale }, &[x]).unwrap());
        check(&format!("upsample x{scale}"), g, 2, 42 + i as u64);
    }
    let g = graph_of(2, 4, 3, |b, x, _| {
        let a = blocks::conv(b, "a", "a", x, 3, 3, 1, 1).unwrap();
        let c = blocks::conv(b, "c", "c", x, 1, 1, 1, 0).unwrap();
        let cat = b.add("cat", "cat", Concat, &[a, x, c]).unwrap();
        blocks::conv(b, "out", "out", cat, 2, 3, 1, 1).unwrap()
    });
    check("concat of three", g, 2, 50);
    let g = graph_of(4, 3, 3, |b, x, t| {
        let temb = blocks::time_mlp(b, "time", t, 6, 5).unwrap();
        let proj = b.add("proj", "proj", Linear { in_features: 5, out_features: 4 }, &[temb]).unwrap();
        let biased = b.add("bias", "bias", AddChannelBias, &[x, proj]).unwrap();
        let scale = b.add("proj2", "proj2", Linear { in_features: 5, out_features: 4 }, &[temb]).unwrap();
        b.add("scale", "scale", ScaleChannels, &[biased, scale]).unwrap()
    });
    check("time MLP, linear, channel bias and scale", g, 3, 60);
}

#[test]
fn whole_models_backward_lowering() {
    check("tiny unet", mini_unet(1, 8, [4, 8, 8, 8], 2, 8, 16).unwrap(), 2, 80);
    check("attention unet", onnx_common::attention_unet(3, 8), 2, 81);
}
