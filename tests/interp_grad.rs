//! Every op's backward against central finite differences, in f64 (the engine is generic over
//! the scalar), plus a whole-model check on a tiny U-Net and f32-vs-f64 agreement.
//!
//! Tolerance: with step h = 1e-5 in f64 the central difference has truncation error ~h^2 = 1e-10
//! and rounding error ~1e-16 * |L| / h ~ 1e-10 for the losses here, so analytic and numeric
//! derivatives must agree to 1e-6 relative; a wrong term in any backward is off by far more.

use crate::common;
use mdc::check::blocks::{self, mini_unet};

use common::graph_of;
use mdc::base::rng::Rng;
use mdc::graph::Graph;
use mdc::interp::{Engine, Executor};
use mdc::ops::{
    Add, AddChannelBias, Attention, Concat, ConvTranspose2d, Embedding, Label, Linear, Op, ScaleChannels,
    Silu, UpsampleNearest,
};
use mdc::params::Params;
use ndarray::{Array1, Array4};

const H: f64 = 1e-5;
const RTOL: f64 = 1e-6;

struct Problem {
    params: Vec<Vec<f64>>,
    x: Vec<f64>,
    t: Vec<f64>,
    /// Class labels for a conditional graph (repeats included, so rows gather several images).
    y: Option<Vec<f64>>,
    dy: Vec<f64>,
    batch: usize,
}

fn normals(rng: &mut Rng, n: usize, scale: f64) -> Vec<f64> {
    (0..n).map(|_| rng.normal() * scale).collect()
}

/// PyTorch-style init, then jittered so GroupNorm's affine is not the identity.
fn problem(graph: &Graph, batch: usize, seed: u64) -> Problem {
    let init = Params::init(graph, seed);
    let mut rng = Rng::new(seed ^ 0xabc);
    let params =
        init.tensors.iter().map(|t| t.iter().map(|&v| v as f64 + 0.2 * rng.normal()).collect()).collect();
    let x = normals(&mut rng, batch * graph.input_shape().numel(), 1.0);
    let t = (0..batch).map(|_| rng.uniform_range(0.0, 1000.0)).collect();
    let dy = normals(&mut rng, batch * graph.output_shape().numel(), 1.0);
    let y = graph.classes().map(|c| (0..batch).map(|i| ((i * 2) % (c + 1)) as f64).collect());
    Problem { params, x, t, y, dy, batch }
}

fn loss(engine: &mut Engine<f64>, p: &Problem, params: &[Vec<f64>], x: &[f64]) -> f64 {
    let views: Vec<&[f64]> = params.iter().map(Vec::as_slice).collect();
    let y = engine.forward(&views, x, &p.t, p.y.as_deref(), p.batch, false);
    y.iter().zip(&p.dy).map(|(a, b)| a * b).sum()
}

/// Up to `count` indices spread over 0..len, always including the first and last.
fn sample(rng: &mut Rng, len: usize, count: usize) -> Vec<usize> {
    if len <= count {
        return (0..len).collect();
    }
    let mut idx = vec![0, len - 1];
    idx.extend((2..count).map(|_| rng.below(len)));
    idx
}

fn assert_close(what: &str, analytic: f64, numeric: f64) {
    let scale = analytic.abs().max(numeric.abs()).max(1.0);
    assert!(
        (analytic - numeric).abs() <= RTOL * scale,
        "{what}: analytic {analytic:.10e} vs finite difference {numeric:.10e}"
    );
}

/// Checks d loss / d(param and input elements) against central differences; returns how many
/// derivatives were compared.
fn check_graph(graph: Graph, batch: usize, per_tensor: usize, seed: u64) -> usize {
    let names: Vec<String> = graph.params().into_iter().map(|(n, _)| n).collect();
    let p = problem(&graph, batch, seed);
    // a budget of one element: every conv runs one output row per band
    let mut engine = Engine::<f64>::new(graph).with_input_grad().with_column_budget(1);
    let views: Vec<&[f64]> = p.params.iter().map(Vec::as_slice).collect();
    engine.forward(&views, &p.x, &p.t, p.y.as_deref(), batch, true);
    let mut grads: Vec<Vec<f64>> = p.params.iter().map(|v| vec![f64::NAN; v.len()]).collect();
    let mut gviews: Vec<&mut [f64]> = grads.iter_mut().map(Vec::as_mut_slice).collect();
    let dx = engine.backward_input_grad(&views, &p.dy, &mut gviews).expect("input gradient requested");
    let mut rng = Rng::new(seed);
    let mut compared = 0;
    let mut params = p.params.clone();
    for (k, name) in names.iter().enumerate() {
        for i in sample(&mut rng, params[k].len(), per_tensor) {
            let orig = params[k][i];
            params[k][i] = orig + H;
            let up = loss(&mut engine, &p, &params, &p.x);
            params[k][i] = orig - H;
            let down = loss(&mut engine, &p, &params, &p.x);
            params[k][i] = orig;
            assert_close(&format!("d/d {name}[{i}]"), grads[k][i], (up - down) / (2.0 * H));
            compared += 1;
        }
    }
    let mut x = p.x.clone();
    for i in sample(&mut rng, x.len(), per_tensor) {
        let orig = x[i];
        x[i] = orig + H;
        let up = loss(&mut engine, &p, &params, &x);
        x[i] = orig - H;
        let down = loss(&mut engine, &p, &params, &x);
        x[i] = orig;
        assert_close(&format!("d/d x[{i}]"), dx[i], (up - down) / (2.0 * H));
        compared += 1;
    }
    compared
}

#[test]
fn conv_gradients_for_strides_paddings_and_kernels() {
    let cases = common::CONV_CASES;
    for (i, &(cin, cout, k, s, p, h, w)) in cases.iter().enumerate() {
        let g = graph_of(cin, h, w, |b, x, _| blocks::conv(b, "conv", "conv", x, cout, k, s, p).unwrap());
        let n = check_graph(g, 2, 12, 10 + i as u64);
        assert!(n > 20, "case {i}: compared {n}");
    }
}

/// Seven images on five workers (2, 2, 1, 1, 1 images each): the workers' partial weight and
/// bias gradients are summed into the first's, in parallel over chunks, then laid out (as on a
/// 16-core machine, where the step splits its batch this way).
#[test]
fn conv_gradients_with_images_split_over_five_workers() {
    let five = rayon::ThreadPoolBuilder::new().num_threads(5).build().unwrap();
    for (i, &(cin, cout, k, s, p, h, w)) in common::CONV_CASES.iter().enumerate().take(4) {
        let g = graph_of(cin, h, w, |b, x, _| blocks::conv(b, "conv", "conv", x, cout, k, s, p).unwrap());
        let n = five.install(|| check_graph(g, 7, 12, 140 + i as u64));
        assert!(n > 20, "case {i}: compared {n}");
    }
}

/// Transposed convs: every geometry of [`common::CONV_TRANSPOSE_CASES`].
#[test]
fn conv_transpose_gradients_for_strides_paddings_and_kernels() {
    for (i, &(cin, cout, k, s, p, h, w)) in common::CONV_TRANSPOSE_CASES.iter().enumerate() {
        let g = graph_of(cin, h, w, |b, x, _| {
            let op =
                ConvTranspose2d { in_channels: cin, out_channels: cout, kernel: k, stride: s, padding: p };
            b.add("up", "up", op, &[x]).unwrap()
        });
        let n = check_graph(g, 2, 12, 100 + i as u64);
        assert!(n >= 16, "case {i}: compared {n}");
    }
    // between two convs, so its input gradient flows on and its output is read by a conv
    let g = graph_of(2, 3, 4, |b, x, _| {
        let c = blocks::conv(b, "a", "a", x, 3, 3, 2, 1).unwrap();
        let op = ConvTranspose2d { in_channels: 3, out_channels: 2, kernel: 4, stride: 2, padding: 1 };
        let u = b.add("up", "up", op, &[c]).unwrap();
        blocks::conv(b, "b", "b", u, 2, 3, 1, 1).unwrap()
    });
    check_graph(g, 2, 10, 120);
}

#[test]
fn group_norm_gradients_with_several_groups() {
    for (i, groups) in [1, 2, 4].into_iter().enumerate() {
        let g = graph_of(8, 3, 5, |b, x, _| blocks::group_norm(b, "norm", "norm", x, groups).unwrap());
        check_graph(g, 2, 16, 20 + i as u64);
    }
}

/// GroupNorm followed by SiLU runs fused when the SiLU is the norm's only reader, unfused when
/// the normalised values are read elsewhere too; both must give the same gradients as the math.
#[test]
fn group_norm_silu_fused_and_unfused_gradients() {
    let fused = graph_of(6, 4, 3, |b, x, _| {
        let n = blocks::group_norm(b, "norm", "norm", x, 3).unwrap();
        b.add("silu", "silu", Silu, &[n]).unwrap()
    });
    check_graph(fused, 2, 20, 25);
    let unfused = graph_of(6, 4, 3, |b, x, _| {
        let n = blocks::group_norm(b, "norm", "norm", x, 3).unwrap();
        let s = b.add("silu", "silu", Silu, &[n]).unwrap();
        b.add("add", "add", Add, &[s, n]).unwrap()
    });
    check_graph(unfused, 2, 20, 26);
    // a per-channel bias added to the SiLU (a ResBlock's time bias, made after the norm in the
    // graph's order) joins the same pass, and its gradient comes out of the norm's backward
    let with_bias = graph_of(6, 4, 3, |b, x, t| {
        let n = blocks::group_norm(b, "norm", "norm", x, 3).unwrap();
        let s = b.add("silu", "silu", Silu, &[n]).unwrap();
        let temb = blocks::time_mlp(b, "time", t, 4, 5).unwrap();
        let tp = b.add("proj", "proj", Linear { in_features: 5, out_features: 6 }, &[temb]).unwrap();
        let biased = b.add("bias", "bias", AddChannelBias, &[s, tp]).unwrap();
        b.add("residual", "residual", Add, &[biased, x]).unwrap()
    });
    assert_eq!(Engine::<f64>::new(with_bias.clone()).fused_nodes().len(), 2, "SiLU and bias fused");
    check_graph(with_bias, 2, 20, 27);
}

#[test]
fn attention_gradients_with_several_heads() {
    for (i, heads) in [1, 2, 4].into_iter().enumerate() {
        let g = graph_of(12, 3, 4, |b, x, _| {
            b.add("attn", "attn", Attention { channels: 4, heads }, &[x]).unwrap()
        });
        check_graph(g, 2, 30, 30 + i as u64);
    }
    // the whole residual attention block: GN, qkv and proj convs, attention, add
    let g = graph_of(8, 4, 3, |b, x, _| blocks::attention(b, "attn", x, 2, 2).unwrap());
    check_graph(g, 2, 10, 35);
}

#[test]
fn class_embedding_gradients_through_a_conditioned_resblock() {
    // A table of 3 classes + null, 6 wide, added to the time MLP as in models/unet-cond.toml,
    // read by a resblock with and without the FiLM scale; batch 5 with labels 0, 2, 0, 2, 0 (the
    // null one among them): rows gather several images, so the scatter-add is checked, and the
    // untouched rows' zero gradient too.
    for film in [false, true] {
        let g = graph_of(4, 3, 3, |b, x, t| {
            let y = b.add("y", "y", Label { classes: 3, hide_below: 0 }, &[]).unwrap();
            let e = b.add("label", "label", Embedding { rows: 4, features: 6 }, &[y]).unwrap();
            let temb = blocks::time_mlp(b, "time", t, 4, 6).unwrap();
            let cond = b.add("cond", "cond", Add, &[temb, e]).unwrap();
            blocks::resblock(b, "res", x, cond, 4, 2, film).unwrap()
        });
        assert_eq!(g.classes(), Some(3));
        let scaled = g.nodes.iter().any(|n| matches!(n.op, Op::ScaleChannels(_)));
        assert_eq!(scaled, film, "the FiLM scale is in the graph exactly when asked for");
        let n = check_graph(g, 5, 24, 44);
        assert!(n > 100, "compared {n}");
    }
}

#[test]
fn channel_scale_gradients() {
    // x * (1 + Linear(temb)) per channel, the FiLM scale of a `film = 1` resblock
    let g = graph_of(4, 3, 3, |b, x, t| {
        let temb = blocks::time_mlp(b, "time", t, 6, 5).unwrap();
        let proj = b.add("proj", "proj", Linear { in_features: 5, out_features: 4 }, &[temb]).unwrap();
        b.add("scale", "scale", ScaleChannels, &[x, proj]).unwrap()
    });
    check_graph(g, 3, 16, 61);
}

#[test]
fn silu_add_and_upsample_gradients() {
    let g = graph_of(3, 4, 5, |b, x, _| b.add("silu", "silu", Silu, &[x]).unwrap());
    check_graph(g, 2, 30, 40);
    // add with x feeding both sides (through a conv), so gradients must accumulate
    let g = graph_of(3, 4, 5, |b, x, _| {
        let c = blocks::conv(b, "conv", "conv", x, 3, 3, 1, 1).unwrap();
        b.add("add", "add", Add, &[c, x]).unwrap()
    });
    check_graph(g, 2, 12, 41);
    for (i, scale) in [2, 3].into_iter().enumerate() {
        let g = graph_of(2, 3, 4, |b, x, _| b.add("up", "up", UpsampleNearest { scale }, &[x]).unwrap());
        check_graph(g, 2, 20, 42 + i as u64);
    }
}

#[test]
fn concat_of_three_inputs_gradients() {
    let g = graph_of(2, 4, 3, |b, x, _| {
        let a = blocks::conv(b, "a", "a", x, 3, 3, 1, 1).unwrap();
        let c = blocks::conv(b, "c", "c", x, 1, 1, 1, 0).unwrap();
        let cat = b.add("cat", "cat", Concat, &[a, x, c]).unwrap();
        blocks::conv(b, "out", "out", cat, 2, 3, 1, 1).unwrap()
    });
    check_graph(g, 2, 12, 50);
}

#[test]
fn timestep_embedding_linear_and_channel_bias_gradients() {
    // t -> embedding -> linear -> silu -> linear, broadcast-added to x's channels
    let g = graph_of(4, 3, 3, |b, x, t| {
        let temb = blocks::time_mlp(b, "time", t, 6, 5).unwrap();
        let proj = b.add("proj", "proj", Linear { in_features: 5, out_features: 4 }, &[temb]).unwrap();
        b.add("bias", "bias", AddChannelBias, &[x, proj]).unwrap()
    });
    check_graph(g, 3, 16, 60);
}

#[test]
fn resblock_gradients() {
    let g = graph_of(4, 4, 4, |b, x, t| {
        let temb = blocks::time_mlp(b, "time", t, 4, 6).unwrap();
        blocks::resblock(b, "res", x, temb, 6, 2, false).unwrap()
    });
    check_graph(g, 2, 8, 70);
}

#[test]
fn tiny_unet_whole_model_gradients() {
    let g = mini_unet(1, 8, [4, 8, 8, 8], 2, 8, 16).unwrap();
    let compared = check_graph(g, 2, 3, 80);
    assert!(compared > 150, "compared only {compared} derivatives");
}

/// The f32 executor (what training runs) agrees with the f64 engine the checks above validate.
#[test]
fn f32_executor_matches_f64_engine() {
    let graph = mini_unet(2, 8, [4, 8, 8, 8], 2, 8, 16).unwrap();
    let batch = 3;
    let p = problem(&graph, batch, 90);
    let mut e64 = Engine::<f64>::new(graph.clone());
    let views: Vec<&[f64]> = p.params.iter().map(Vec::as_slice).collect();
    let y64 = e64.forward(&views, &p.x, &p.t, None, batch, true);
    let mut g64: Vec<Vec<f64>> = p.params.iter().map(|v| vec![0.0; v.len()]).collect();
    let mut gv: Vec<&mut [f64]> = g64.iter_mut().map(Vec::as_mut_slice).collect();
    e64.backward(&views, &p.dy, &mut gv);

    let mut params = Params::init(&graph, 90);
    for (t, v) in params.tensors.iter_mut().zip(&p.params) {
        for (a, &b) in t.iter_mut().zip(v) {
            *a = b as f32;
        }
    }
    let (c, h, w) = graph.input_shape().as_image().unwrap();
    let x = Array4::from_shape_vec((batch, c, h, w), p.x.iter().map(|&v| v as f32).collect()).unwrap();
    let t = Array1::from_vec(p.t.iter().map(|&v| v as f32).collect());
    let dy = Array4::from_shape_vec((batch, c, h, w), p.dy.iter().map(|&v| v as f32).collect()).unwrap();
    let mut exec = Executor::new(graph);
    let y_inf = exec.forward(&params, x.view(), t.view());
    let y32 = exec.forward_train(&params, x.view(), t.view());
    assert_eq!(y_inf, y32, "inference and training forward differ");
    let max_y = y64.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    for (a, b) in y32.iter().zip(&y64) {
        assert!((*a as f64 - b).abs() <= 1e-4 * max_y.max(1.0), "forward f32 {a} vs f64 {b}");
    }
    let mut grads = params.zeros_like();
    exec.backward(&params, dy.view(), &mut grads);
    for ((name, g32), g64) in grads.names.iter().zip(&grads.tensors).zip(&g64) {
        let scale = g64.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-3);
        for (a, b) in g32.iter().zip(g64) {
            assert!((*a as f64 - b).abs() <= 1e-3 * scale, "{name}: grad f32 {a} vs f64 {b} (scale {scale})");
        }
    }
}
