//! Times conv forward and backward on the U-Net's heaviest layer shapes (one image per worker,
//! fastest of many runs, which is robust to other load on the machine).
//! Usage: RAYON_NUM_THREADS=1 cargo bench --bench conv_backward

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
    // (label, cin, cout, size)
    let layers = [
        ("dec1.conv1", 128, 32, 32),
        ("enc1.conv2", 64, 64, 32),
        ("dec2.conv1", 256, 64, 16),
        ("mid.conv", 128, 128, 8),
    ];
    let batch = 4;
    let mut workers = Workers::<f32>::new();
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
        let f = best_ms(|| forward(&mut workers, &g, batch, &x, &w, &b, &mut y));
        let bw = best_ms(|| backward(&mut workers, &g, batch, &x, &w, &y, Some(&mut dx), &mut dw, &mut db));
        println!(
            "{label:<12} forward {f:7.3} ms ({:5.1} GFLOP/s)  backward {bw:7.3} ms ({:5.1} GFLOP/s)",
            flops / f / 1e6,
            2.0 * flops / bw / 1e6
        );
    }
}
