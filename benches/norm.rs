//! GroupNorm + SiLU (one fused pass, `kernels/norm.rs`) on the GroupNorms of
//! models/unet-rgb32.toml at training batch 32: per step, the forward and the backward of all of
//! them, against a copy of the same bytes (the memory floor of a pass that reads x and writes y).
//! The GroupNorms before a ResBlock's time bias are timed twice more: with the bias added in the
//! same pass (what the interpreter runs) and as a pass of its own after it (what it ran before).
//! `cargo bench --bench norm` (run from the repository root); medians of 31 runs, on all rayon
//! threads.

use std::collections::BTreeMap;
use std::time::Instant;

use mdc::graph::Op;
use mdc::interp::Engine;
use mdc::kernels::elementwise::{add_channel_bias, add_channel_bias_backward};
use mdc::kernels::norm::{self, GroupNormGeom};
use mdc::kernels::Workers;

const MODEL: &str = "models/unet-rgb32.toml";
const BATCH: usize = 32;

/// Median and fastest of 31 runs, ms.
fn median_and_fastest_ms(mut f: impl FnMut()) -> [f64; 2] {
    f();
    let mut t: Vec<f64> = (0..31)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(f64::total_cmp);
    [t[15], t[0]]
}

/// How many of the model's GroupNorms have each (channels, side), and how many of those the
/// interpreter fuses with a time bias.
fn group_norm_shapes() -> BTreeMap<(usize, usize), (usize, usize)> {
    let graph = mdc::model::load(std::path::Path::new(MODEL))
        .unwrap_or_else(|e| panic!("{MODEL}: {e} (run from the repository root)"))
        .graph;
    let fused = Engine::<f32>::new(graph.clone()).fused_nodes();
    let consumers = graph.consumers();
    let mut shapes = BTreeMap::new();
    for (id, node) in graph.nodes.iter().enumerate() {
        if let Op::GroupNorm(gn) = &node.op {
            let (c, h, w) = node.shape.as_image().expect("GroupNorm of an image");
            assert_eq!((gn.groups, h), (8, w), "the bench assumes 8 groups on square images");
            // its SiLU's reader is a time bias fused into its pass
            let is_fused_bias =
                |b: &usize| matches!(graph.nodes[*b].op, Op::AddChannelBias(_)) && fused.contains(b);
            let biased = consumers[id].iter().any(|&s| consumers[s].iter().any(is_fused_bias));
            let e = shapes.entry((c, h)).or_insert((0, 0));
            e.0 += 1;
            e.1 += usize::from(biased);
        }
    }
    shapes
}

/// [median, fastest] sums over the GroupNorms.
#[derive(Default)]
struct Totals([f64; 2]);

impl Totals {
    fn add(&mut self, count: usize, t: [f64; 2]) {
        for (s, v) in self.0.iter_mut().zip(t) {
            *s += count as f64 * v;
        }
    }
}

fn main() {
    let shapes = group_norm_shapes();
    let mut workers = Workers::<f32>::new();
    println!(
        "{MODEL}: {} GroupNorms, threads {}, batch {BATCH}",
        shapes.values().map(|v| v.0).sum::<usize>(),
        workers.threads()
    );
    // the anchor runs on the shapes read here, not on a list of its own
    let listed: Vec<String> = shapes.iter().map(|(&(c, s), &(n, b))| format!("{c}x{s}x{n}x{b}")).collect();
    println!(
        "PyTorch's anchor on these shapes: python3 scripts/torch_norm_bench.py --shapes {}",
        listed.join(",")
    );
    println!(
        "{:>8} {:>5} {:>3} {:>9} {:>9} {:>9} {:>7} {:>14} {:>14}",
        "channels", "side", "n", "fwd ms", "bwd ms", "copy ms", "biased", "bias fused", "bias apart"
    );
    let (mut fwd_total, mut bwd_total, mut copy_total, mut bytes) =
        (Totals::default(), Totals::default(), Totals::default(), 0.0);
    // the GroupNorms before a time bias, the bias in their pass and apart; and the model's
    // passes as the interpreter runs them (the others plain, those with the bias in the pass)
    let (mut fused_fwd, mut fused_bwd, mut apart_fwd, mut apart_bwd) =
        (Totals::default(), Totals::default(), Totals::default(), Totals::default());
    let (mut model_fwd, mut model_bwd) = (Totals::default(), Totals::default());
    for (&(channels, side), &(count, biased)) in &shapes {
        let hw = side * side;
        let g = GroupNormGeom { channels, hw, groups: 8, eps: 1e-5 };
        let len = BATCH * channels * hw;
        let x: Vec<f32> = (0..len).map(|i| ((i * 7919 % 1013) as f32 - 506.0) / 300.0).collect();
        let gamma: Vec<f32> = (0..channels).map(|c| 1.0 + c as f32 / 1000.0).collect();
        let beta: Vec<f32> = (0..channels).map(|c| c as f32 / 500.0).collect();
        let time_bias: Vec<f32> = (0..BATCH * channels).map(|i| (i % 13) as f32 / 7.0 - 0.9).collect();
        let (mut y, mut y2, mut stats) = (vec![0f32; len], vec![0f32; len], vec![0f32; BATCH * 16]);
        let mut forward = |y: &mut [f32], bias: Option<&[f32]>| {
            norm::forward(&g, BATCH, &x, &gamma, &beta, y, &mut stats, true, bias)
        };
        let fwd = median_and_fastest_ms(|| forward(&mut y, None));
        // [fused, apart], timed only where the model has such GroupNorms
        let fwd_bias = (biased > 0).then(|| {
            let fused = median_and_fastest_ms(|| forward(&mut y, Some(&time_bias)));
            let apart = median_and_fastest_ms(|| {
                forward(&mut y2, None);
                add_channel_bias(hw, &y2, &time_bias, &mut y);
            });
            [fused, apart]
        });
        let dy: Vec<f32> = (0..len).map(|i| ((i * 31 % 97) as f32 - 48.0) / 50.0).collect();
        let mut dx = vec![0f32; len];
        let (mut dg, mut db, mut dtb) =
            (vec![0f32; channels], vec![0f32; channels], vec![0f32; BATCH * channels]);
        let mut backward = |workers: &mut Workers<f32>, dtb: Option<&mut [f32]>| {
            norm::backward(
                workers, &g, BATCH, &x, &gamma, &beta, &stats, &dy, &mut dx, &mut dg, &mut db, true, dtb,
            )
        };
        let bwd = median_and_fastest_ms(|| backward(&mut workers, None));
        let bwd_bias = (biased > 0).then(|| {
            let fused = median_and_fastest_ms(|| backward(&mut workers, Some(&mut dtb)));
            let apart = median_and_fastest_ms(|| {
                add_channel_bias_backward(hw, &dy, &mut dtb);
                backward(&mut workers, None);
            });
            [fused, apart]
        });
        let copy = median_and_fastest_ms(|| y.copy_from_slice(&x));
        let pair = |f: [f64; 2], b: [f64; 2]| format!("{:.3}/{:.3}", f[0], b[0]);
        let (fused, apart) = match (fwd_bias, bwd_bias) {
            (Some([ff, fa]), Some([bf, ba])) => (pair(ff, bf), pair(fa, ba)),
            _ => (String::new(), String::new()),
        };
        println!(
            "{channels:>8} {side:>5} {count:>3} {:>9.3} {:>9.3} {:>9.3} {biased:>7} {fused:>14} {apart:>14}",
            fwd[0], bwd[0], copy[0]
        );
        fwd_total.add(count, fwd);
        bwd_total.add(count, bwd);
        copy_total.add(count, copy);
        model_fwd.add(count - biased, fwd);
        model_bwd.add(count - biased, bwd);
        if let (Some([ff, fa]), Some([bf, ba])) = (fwd_bias, bwd_bias) {
            for (total, t) in [(&mut fused_fwd, ff), (&mut apart_fwd, fa), (&mut model_fwd, ff)] {
                total.add(biased, t);
            }
            for (total, t) in [(&mut fused_bwd, bf), (&mut apart_bwd, ba), (&mut model_bwd, bf)] {
                total.add(biased, t);
            }
        }
        bytes += count as f64 * len as f64 * 8.0;
    }
    println!(
        "per step (medians): forward {:.2} ms, backward {:.2} ms; a copy of the same bytes {:.2} ms ({:.1} GB/s)",
        fwd_total.0[0],
        bwd_total.0[0],
        copy_total.0[0],
        bytes / copy_total.0[0] / 1e6
    );
    println!(
        "per step (fastest runs): forward {:.2} ms, backward {:.2} ms; copy {:.2} ms",
        fwd_total.0[1], bwd_total.0[1], copy_total.0[1]
    );
    println!(
        "the {} GroupNorms before a time bias (medians, forward/backward): the bias in their pass {:.2}/{:.2} ms, \
         apart {:.2}/{:.2} ms",
        shapes.values().map(|v| v.1).sum::<usize>(),
        fused_fwd.0[0],
        fused_bwd.0[0],
        apart_fwd.0[0],
        apart_bwd.0[0]
    );
    println!(
        "the model's GroupNorm passes per step (medians, time biases included): forward {:.2} ms, backward {:.2} ms",
        model_fwd.0[0], model_bwd.0[0]
    );
}
