//! Times conv forward and backward on the U-Nets' 3x3 layer shapes, fp32, by im2col and by
//! Winograd's F(2x2, 3x3) side by side, at 4 and 32 images (fastest of many runs, which is
//! robust to other load on the machine). `winograd::MIN_TILES`, the fewest tiles for which
//! Winograd runs by default, comes from this table.
//! Usage: cargo bench --bench conv_backward (RAYON_NUM_THREADS=1 for one thread)

use std::time::Instant;

use mdc::kernels::conv::{backward, forward, ConvGeom};
use mdc::kernels::Workers;

fn best_ms(mut f: impl FnMut()) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..30 {
        let start = Instant::now();
        f();
        best = best.min(start.elapsed().as_secs_f64() * 1e3);
    }
    best
}

fn main() {
    // (label, cin, cout, size): unet.toml's heaviest, and unet-rgb32.toml's 16x16 and 4x4 levels
    let layers = [
        ("dec1.conv1", 128, 32, 32),
        ("enc1.conv2", 64, 64, 32),
        ("dec2.conv1", 256, 64, 16),
        ("mid.conv", 128, 128, 8),
        ("rgb32 enc2", 64, 64, 16),
        ("rgb32 mid", 128, 128, 4),
    ];
    let mut workers = Workers::<f32>::new();
    println!("{:<12} {:>6}  {:<8} {:>9} {:>17}", "layer", "images", "path", "forward", "backward");
    for batch in [4, 32] {
        for (label, cin, cout, size) in layers {
            let g = ConvGeom { cin, cout, k: 3, stride: 1, pad: 1, h: size, w: size, ho: size, wo: size };
            let x = vec![0.5f32; batch * cin * size * size];
            let w = vec![0.01f32; cout * cin * 9];
            let b = vec![0.0f32; cout];
            let mut y = vec![0f32; batch * cout * size * size];
            let mut dx = vec![0f32; x.len()];
            let mut dw = vec![0f32; w.len()];
            let mut db = vec![0f32; cout];
            let flops = 2.0 * (cin * 9 * cout * size * size * batch) as f64;
            // Winograd from 0 tiles on (always), or from usize::MAX (never: im2col)
            for (path, min_tiles) in [("im2col", usize::MAX), ("winograd", 0)] {
                workers.winograd_min_tiles = Some(min_tiles);
                let f = best_ms(|| forward(&mut workers, &g, batch, &x, &w, &b, &mut y));
                let bw = best_ms(|| {
                    backward(&mut workers, &g, batch, &x, &w, &y, Some(&mut dx), &mut dw, &mut db)
                });
                println!(
                    "{label:<12} {batch:>6}  {path:<8} {f:6.3} ms ({:5.1} GFLOP/s) {bw:7.3} ms ({:5.1} GFLOP/s)",
                    flops / f / 1e6,
                    2.0 * flops / bw / 1e6
                );
            }
        }
    }
}
