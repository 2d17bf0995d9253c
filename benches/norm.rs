//! GroupNorm + SiLU (one fused pass, `kernels/norm.rs`) on the shapes of models/unet-rgb32.toml
//! at training batch 32: per step, the forward and the backward of all 17 of them, against a
//! copy of the same bytes (the memory floor of a pass that reads x and writes y).
//! `cargo bench --bench norm`; medians of 31 runs, on all rayon threads.

use std::time::Instant;

use mdc::kernels::norm::{self, GroupNormGeom};
use mdc::kernels::Workers;

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

fn main() {
    let batch = 32;
    // (channels, side, how many GroupNorms of the model have it)
    let shapes = [
        (32, 32, 3),
        (64, 32, 1),
        (128, 32, 1),
        (64, 16, 2),
        (128, 16, 1),
        (256, 16, 1),
        (128, 8, 7),
        (256, 8, 1),
    ];
    let mut workers = Workers::<f32>::new();
    println!("threads {}, batch {batch}", workers.threads());
    println!(
        "{:>8} {:>5} {:>3} {:>10} {:>10} {:>10}",
        "channels", "side", "n", "fwd ms", "bwd ms", "copy ms"
    );
    // per step, [median, fastest]
    let (mut fwd_total, mut bwd_total, mut copy_total, mut bytes) = ([0.0; 2], [0.0; 2], [0.0; 2], 0.0);
    for (channels, side, count) in shapes {
        let g = GroupNormGeom { channels, hw: side * side, groups: 8, eps: 1e-5 };
        let len = batch * channels * side * side;
        let x: Vec<f32> = (0..len).map(|i| ((i * 7919 % 1013) as f32 - 506.0) / 300.0).collect();
        let gamma: Vec<f32> = (0..channels).map(|c| 1.0 + c as f32 / 1000.0).collect();
        let beta: Vec<f32> = (0..channels).map(|c| c as f32 / 500.0).collect();
        let (mut y, mut stats) = (vec![0f32; len], vec![0f32; batch * 16]);
        let fwd = median_and_fastest_ms(|| {
            norm::forward(&mut workers, &g, batch, &x, &gamma, &beta, &mut y, &mut stats, true)
        });
        let dy0: Vec<f32> = (0..len).map(|i| ((i * 31 % 97) as f32 - 48.0) / 50.0).collect();
        let (mut dy, mut dx) = (dy0.clone(), vec![0f32; len]);
        let (mut dg, mut db) = (vec![0f32; channels], vec![0f32; channels]);
        let bwd = median_and_fastest_ms(|| {
            dy.copy_from_slice(&dy0);
            norm::backward(
                &mut workers,
                &g,
                batch,
                &x,
                &gamma,
                &beta,
                &stats,
                &mut dy,
                &mut dx,
                &mut dg,
                &mut db,
                true,
            )
        });
        let reset = median_and_fastest_ms(|| dy.copy_from_slice(&dy0));
        let copy = median_and_fastest_ms(|| y.copy_from_slice(&x));
        println!(
            "{channels:>8} {side:>5} {count:>3} {:>10.3} {:>10.3} {:>10.3}",
            fwd[0],
            bwd[0] - reset[0],
            copy[0]
        );
        for s in 0..2 {
            fwd_total[s] += count as f64 * fwd[s];
            bwd_total[s] += count as f64 * (bwd[s] - reset[s]);
            copy_total[s] += count as f64 * copy[s];
        }
        bytes += count as f64 * len as f64 * 8.0;
    }
    println!(
        "per step (medians): forward {:.2} ms, backward {:.2} ms; a copy of the same bytes {:.2} ms ({:.1} GB/s)",
        fwd_total[0],
        bwd_total[0],
        copy_total[0],
        bytes / copy_total[0] / 1e6
    );
    println!(
        "per step (fastest runs): forward {:.2} ms, backward {:.2} ms; copy {:.2} ms",
        fwd_total[1], bwd_total[1], copy_total[1]
    );
}
