//! Forward semantics against naive reference loops written straight from the op docs, parameter
//! counts, batch independence, and the clear error for a checkpoint of another model.

use crate::common;
use mdc::check::blocks::{self, mini_unet};

use common::graph_of;
use mdc::base::rng::Rng;
use mdc::graph::Graph;
use mdc::interp::{Engine, Executor};
use mdc::kernels::bf16::Precision;
use mdc::ops::{AddChannelBias, Attention, Concat, Linear, Silu, TimestepEmbedding, UpsampleNearest};
use mdc::params::Params;
use ndarray::{Array1, Array4, Axis};

fn random(rng: &mut Rng, n: usize) -> Vec<f64> {
    (0..n).map(|_| rng.normal()).collect()
}

/// Runs the graph twice, with the default im2col band size and with one output row per band;
/// both must agree with each other (and the caller checks them against the reference).
fn run(graph: &Graph, params: &[Vec<f64>], x: &[f64], t: &[f64], batch: usize) -> Vec<f64> {
    let views: Vec<&[f64]> = params.iter().map(Vec::as_slice).collect();
    let whole = Engine::<f64>::new(graph.clone()).forward(&views, x, t, None, batch, false);
    let banded =
        Engine::<f64>::new(graph.clone()).with_column_budget(1).forward(&views, x, t, None, batch, false);
    assert_all_close(&banded, &whole, "banded vs whole-image im2col");
    whole
}

fn assert_all_close(got: &[f64], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!((a - b).abs() <= 1e-10 * (1.0 + b.abs()), "{what}[{i}]: got {a}, want {b}");
    }
}

#[test]
fn conv_matches_naive_loops() {
    let cases = common::CONV_CASES;
    let mut rng = Rng::new(1);
    for &(cin, cout, k, s, p, h, w) in &cases {
        let g = graph_of(cin, h, w, |b, x, _| blocks::conv(b, "conv", "conv", x, cout, k, s, p).unwrap());
        let (_, ho, wo) = g.output_shape().as_image().unwrap();
        let batch = 2;
        let wt = random(&mut rng, cout * cin * k * k);
        let bias = random(&mut rng, cout);
        let x = random(&mut rng, batch * cin * h * w);
        let got = run(&g, &[wt.clone(), bias.clone()], &x, &[0.0; 2], batch);
        let mut want = vec![0.0; batch * cout * ho * wo];
        for n in 0..batch {
            for co in 0..cout {
                for oy in 0..ho {
                    for ox in 0..wo {
                        let mut acc = bias[co];
                        for ci in 0..cin {
                            for ky in 0..k {
                                for kx in 0..k {
                                    let iy = (oy * s + ky) as isize - p as isize;
                                    let ix = (ox * s + kx) as isize - p as isize;
                                    if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                        acc += wt[((co * cin + ci) * k + ky) * k + kx]
                                            * x[((n * cin + ci) * h + iy as usize) * w + ix as usize];
                                    }
                                }
                            }
                        }
                        want[((n * cout + co) * ho + oy) * wo + ox] = acc;
                    }
                }
            }
        }
        assert_all_close(&got, &want, &format!("conv k{k} s{s} p{p} {h}x{w}"));
    }
}

#[test]
fn group_norm_matches_naive() {
    let (c, h, w, groups, batch) = (6, 3, 4, 3, 2);
    let g = graph_of(c, h, w, |b, x, _| blocks::group_norm(b, "norm", "norm", x, groups).unwrap());
    let mut rng = Rng::new(2);
    let (gamma, beta, x) = (random(&mut rng, c), random(&mut rng, c), random(&mut rng, batch * c * h * w));
    let got = run(&g, &[gamma.clone(), beta.clone()], &x, &[0.0; 2], batch);
    let per = c / groups * h * w;
    let mut want = vec![0.0; x.len()];
    for n in 0..batch {
        for grp in 0..groups {
            let start = n * c * h * w + grp * per;
            let xs = &x[start..start + per];
            let mean = xs.iter().sum::<f64>() / per as f64;
            let var = xs.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / per as f64;
            for (j, v) in xs.iter().enumerate() {
                let ch = grp * (c / groups) + j / (h * w);
                want[start + j] = (v - mean) / (var + 1e-5f32 as f64).sqrt() * gamma[ch] + beta[ch];
            }
        }
    }
    assert_all_close(&got, &want, "group_norm");
}

#[test]
fn attention_matches_naive_with_documented_layout() {
    let (c, heads, h, w, batch) = (6, 3, 2, 3, 2);
    let g = graph_of(3 * c, h, w, |b, x, _| {
        b.add("attn", "attn", Attention { channels: c, heads }, &[x]).unwrap()
    });
    let mut rng = Rng::new(3);
    let x = random(&mut rng, batch * 3 * c * h * w);
    let got = run(&g, &[], &x, &[0.0; 2], batch);
    let (p, d) = (h * w, c / heads);
    let at = |n: usize, ch: usize, pos: usize| x[(n * 3 * c + ch) * p + pos];
    let mut want = vec![0.0; batch * c * p];
    for n in 0..batch {
        for hd in 0..heads {
            for i in 0..p {
                let scores: Vec<f64> = (0..p)
                    .map(|j| {
                        (0..d).map(|e| at(n, hd * d + e, i) * at(n, c + hd * d + e, j)).sum::<f64>()
                            / (d as f64).sqrt()
                    })
                    .collect();
                let max = scores.iter().cloned().fold(f64::MIN, f64::max);
                let z: f64 = scores.iter().map(|s| (s - max).exp()).sum();
                for e in 0..d {
                    want[(n * c + hd * d + e) * p + i] =
                        (0..p).map(|j| (scores[j] - max).exp() / z * at(n, 2 * c + hd * d + e, j)).sum();
                }
            }
        }
    }
    assert_all_close(&got, &want, "attention");
}

#[test]
fn timestep_embedding_upsample_and_concat_match_their_definitions() {
    let dim = 6;
    let g = graph_of(1, 1, 1, |b, _, t| b.add("e", "e", TimestepEmbedding { dim }, &[t]).unwrap());
    let t = [0.0, 7.0, 999.0];
    let got = run(&g, &[], &[0.0; 3], &t, 3);
    for (n, &tv) in t.iter().enumerate() {
        for i in 0..dim / 2 {
            let f = (-(10000f64).ln() * i as f64 / (dim / 2) as f64).exp();
            assert!((got[n * dim + i] - (tv * f).sin()).abs() < 1e-12);
            assert!((got[n * dim + dim / 2 + i] - (tv * f).cos()).abs() < 1e-12);
        }
    }
    let g = graph_of(2, 2, 3, |b, x, _| {
        let u = b.add("u", "u", UpsampleNearest { scale: 2 }, &[x]).unwrap();
        let v = b.add("v", "v", UpsampleNearest { scale: 2 }, &[x]).unwrap();
        let s = b.add("s", "s", Silu, &[v]).unwrap();
        b.add("cat", "cat", Concat, &[u, s]).unwrap()
    });
    let mut rng = Rng::new(4);
    let x = random(&mut rng, 2 * 2 * 2 * 3);
    let got = run(&g, &[], &x, &[0.0; 2], 2);
    for n in 0..2 {
        for half in 0..2 {
            for ch in 0..2 {
                for i in 0..4 {
                    for j in 0..6 {
                        let v = x[((n * 2 + ch) * 2 + i / 2) * 3 + j / 2];
                        let want = if half == 0 { v } else { v / (1.0 + (-v).exp()) };
                        assert!((got[((n * 4 + half * 2 + ch) * 4 + i) * 6 + j] - want).abs() < 1e-12);
                    }
                }
            }
        }
    }
}

#[test]
fn parameter_counts_match_the_checker() {
    for g in [
        mini_unet(1, 28, [32, 64, 128, 128], 8, 32, 128).unwrap(),
        mini_unet(3, 32, [32, 64, 128, 128], 8, 32, 128).unwrap(),
        mini_unet(1, 8, [4, 8, 8, 8], 2, 8, 16).unwrap(),
    ] {
        let params = Params::init(&g, 0);
        assert_eq!(params.numel(), g.param_count());
        let mut exec = Executor::new(g.clone());
        let (c, h, w) = g.input_shape().as_image().unwrap();
        let x = Array4::<f32>::zeros((1, c, h, w));
        let t = Array1::<f32>::zeros(1);
        exec.forward_train(&params, x.view(), t.view());
        let mut grads = params.zeros_like();
        exec.backward(&params, Array4::<f32>::ones((1, c, h, w)).view(), &mut grads);
        assert_eq!(grads.numel(), g.param_count());
        assert!(grads.tensors.iter().all(|t| t.iter().all(|v| v.is_finite())));
    }
}

/// Each image's output depends only on that image: batch of 5 (split over workers) equals five
/// single-image runs (which use threaded GEMMs instead).
#[test]
fn batched_forward_and_backward_equal_per_image_runs() {
    let g = mini_unet(2, 8, [4, 8, 8, 8], 2, 8, 16).unwrap();
    let params = Params::init(&g, 5);
    let mut rng = Rng::new(6);
    let x = Array4::from_shape_fn((5, 2, 8, 8), |_| rng.normal() as f32);
    let t = Array1::from_shape_fn(5, |i| (i * 100) as f32);
    let dy = Array4::from_shape_fn((5, 2, 8, 8), |_| rng.normal() as f32);
    let mut exec = Executor::new(g);
    let y = exec.forward_train(&params, x.view(), t.view());
    let mut grads = params.zeros_like();
    exec.backward(&params, dy.view(), &mut grads);
    let mut sum = params.zeros_like();
    for n in 0..5 {
        let xi = x.index_axis(Axis(0), n).insert_axis(Axis(0)).to_owned();
        let ti = t.slice(ndarray::s![n..n + 1]).to_owned();
        let yi = exec.forward_train(&params, xi.view(), ti.view());
        for (a, b) in yi.iter().zip(y.index_axis(Axis(0), n).iter()) {
            assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "image {n}: {a} vs {b}");
        }
        let mut gi = params.zeros_like();
        exec.backward(&params, dy.index_axis(Axis(0), n).insert_axis(Axis(0)).view(), &mut gi);
        for (s, g) in sum.tensors.iter_mut().zip(&gi.tensors) {
            *s += g;
        }
    }
    for ((name, a), b) in grads.names.iter().zip(&grads.tensors).zip(&sum.tensors) {
        let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-3);
        for (u, v) in a.iter().zip(b) {
            assert!((u - v).abs() <= 1e-4 * scale, "{name}: batched {u} vs summed {v}");
        }
    }
}

#[test]
fn checkpoint_from_another_channel_progression_is_rejected_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.safetensors");
    let other = mini_unet(3, 32, [32, 64, 64, 128], 8, 32, 128).unwrap();
    Params::init(&other, 1).save(&path).unwrap();
    let model = mini_unet(3, 32, [32, 64, 128, 128], 8, 32, 128).unwrap();
    let err = Params::load(&path, &model).unwrap_err().to_string();
    assert!(err.contains("other.safetensors"), "{err}");
    assert!(
        err.contains("`enc2.conv1.weight`: expected shape [128, 64, 3, 3], found [64, 64, 3, 3]"),
        "{err}"
    );
    assert!(err.contains("missing tensor `enc2.skip.weight`"), "{err}");
    assert!(err.contains("different model file"), "{err}");
    // the same file loads into the model it came from
    assert!(Params::load(&path, &other).is_ok());
}

/// The engine's precision reaches the conv2d and linear ops' forward and backward: at bf16 the
/// output and every gradient move off fp32's (the products ran in bf16), by no more than bf16's
/// rounding.
#[test]
fn precision_reaches_the_conv_and_linear_ops() {
    // without AVX512_BF16 the products run on the portable reference kernel
    let conv = graph_of(8, 6, 6, |b, x, _| blocks::conv(b, "conv", "conv", x, 16, 3, 1, 1).unwrap());
    // no conv here: only the linears' products can round
    let linear = graph_of(16, 2, 2, |b, x, t| {
        let temb = blocks::time_mlp(b, "time", t, 32, 32).unwrap();
        let proj = b.add("proj", "proj", Linear { in_features: 32, out_features: 16 }, &[temb]).unwrap();
        b.add("bias", "bias", AddChannelBias, &[x, proj]).unwrap()
    });
    let batch = 4;
    for (what, graph) in [("conv2d", conv), ("linear", linear)] {
        let mut rng = Rng::new(11);
        let params = Params::init(&graph, 11);
        let views: Vec<&[f32]> = params.tensors.iter().map(|t| t.as_slice().unwrap()).collect();
        let normal = |rng: &mut Rng, n: usize| -> Vec<f32> { (0..n).map(|_| rng.normal() as f32).collect() };
        let x = normal(&mut rng, batch * graph.input_shape().numel());
        let t: Vec<f32> = (0..batch).map(|i| 10.0 + 37.0 * i as f32).collect();
        let dy = normal(&mut rng, batch * graph.output_shape().numel());
        let run = |precision: Precision| {
            let mut e = Engine::<f32>::new(graph.clone()).with_precision(precision);
            let y = e.forward(&views, &x, &t, None, batch, true);
            let mut grads: Vec<Vec<f32>> = views.iter().map(|v| vec![0.0; v.len()]).collect();
            let mut gv: Vec<&mut [f32]> = grads.iter_mut().map(Vec::as_mut_slice).collect();
            e.backward(&views, &dy, &mut gv);
            (y, grads)
        };
        let (y32, g32) = run(Precision::Fp32);
        let (y16, g16) = run(Precision::Bf16);
        let compare = |name: &str, got: &[f32], want: &[f32]| {
            let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-3);
            let gap = got.iter().zip(want).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(gap > 0.0, "{what} {name}: bf16 computed exactly what fp32 did: bf16 was not used");
            assert!(gap <= 3e-2 * scale, "{what} {name}: bf16 strays {gap} from fp32 (scale {scale})");
        };
        compare("output", &y16, &y32);
        for ((name, a), b) in params.names.iter().zip(&g16).zip(&g32) {
            if name.ends_with(".weight") {
                compare(&format!("d{name}"), a, b);
            }
        }
    }
}
