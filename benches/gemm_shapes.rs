//! GEMM candidates on the conv shapes of the RGB 32x32 mini U-Net (per image, one thread, as
//! the interpreter runs them): the `gemm` crate (through mdc's wrapper) vs ndarray's
//! matrixmultiply. Prints GFLOP/s, best of several repetitions (the machine is shared).
//! Usage: cargo bench --bench gemm_shapes

use std::time::Instant;

use mdc::kernels::{matmul, Tr};
use ndarray::linalg::general_mat_mul;
use ndarray::Array2;

fn best_gflops(flops: f64, mut f: impl FnMut()) -> f64 {
    let mut best = f64::MAX;
    let reps = ((2e9 / flops) as usize).clamp(3, 200);
    for _ in 0..5 {
        let start = Instant::now();
        for _ in 0..reps {
            f();
        }
        best = best.min(start.elapsed().as_secs_f64() / reps as f64);
    }
    flops / best / 1e9
}

fn main() {
    // (label, m, n, k, transpose a, transpose b): forward Y = W cols, backward dW = dY cols^T
    // and dcols = W^T dY, for the heaviest convs.
    let shapes = [
        ("enc1.conv2 fwd", 64, 1024, 576, Tr::No, Tr::No),
        ("enc1.conv2 fwdT", 1024, 64, 576, Tr::Yes, Tr::No),
        ("dec1.conv1 fwdT", 1024, 32, 1152, Tr::Yes, Tr::No),
        ("enc2.conv2 fwdT", 256, 128, 1152, Tr::Yes, Tr::No),
        ("mid.conv fwdT", 64, 128, 1152, Tr::Yes, Tr::No),
        ("enc1.conv2 dW", 64, 576, 1024, Tr::No, Tr::Yes),
        ("enc1.conv2 dW colsT", 64, 576, 1024, Tr::No, Tr::No),
        ("enc1.conv2 dW dyT", 64, 576, 1024, Tr::Yes, Tr::Yes),
        ("enc1.conv2 dWT", 576, 64, 1024, Tr::No, Tr::No),
        ("dec1.conv1 dWT", 1152, 32, 1024, Tr::No, Tr::No),
        ("mid.conv dWT", 1152, 128, 64, Tr::No, Tr::No),
        ("enc1.conv2 dW both", 64, 576, 1024, Tr::Yes, Tr::No),
        ("enc1.conv2 dcols", 576, 1024, 64, Tr::Yes, Tr::No),
        ("dec1.conv1 fwd", 32, 1024, 1152, Tr::No, Tr::No),
        ("dec1.conv1 dW", 32, 1152, 1024, Tr::No, Tr::Yes),
        ("dec1.conv1 dW colsT", 32, 1152, 1024, Tr::No, Tr::No),
        ("dec1.conv1 dcols", 1152, 1024, 32, Tr::Yes, Tr::No),
        ("dec2.conv1 fwd", 64, 256, 2304, Tr::No, Tr::No),
        ("enc2.conv2 fwd", 128, 256, 1152, Tr::No, Tr::No),
        ("mid.conv fwd", 128, 64, 1152, Tr::No, Tr::No),
        ("mid.conv dW", 128, 1152, 64, Tr::No, Tr::Yes),
        ("mid.conv dcols", 1152, 64, 128, Tr::Yes, Tr::No),
        ("up2.conv fwd", 64, 1024, 576, Tr::No, Tr::No),
    ];
    println!("{:<18} {:>5} {:>5} {:>5}  {:>10} {:>16}", "shape", "m", "n", "k", "gemm", "matrixmultiply");
    for (label, m, n, k, ta, tb) in shapes {
        let a = vec![0.5f32; m * k];
        let b = vec![0.25f32; k * n];
        let mut c = vec![0f32; m * n];
        let flops = 2.0 * (m * n * k) as f64;
        let g = best_gflops(flops, || matmul(&mut c, m, n, k, &a, ta, &b, tb, false, 1));
        let aa = Array2::from_shape_vec(if ta == Tr::No { (m, k) } else { (k, m) }, a.clone()).unwrap();
        let bb = Array2::from_shape_vec(if tb == Tr::No { (k, n) } else { (n, k) }, b.clone()).unwrap();
        let av = if ta == Tr::No { aa.view() } else { aa.t() };
        let bv = if tb == Tr::No { bb.view() } else { bb.t() };
        let mut cc = Array2::<f32>::zeros((m, n));
        let mm = best_gflops(flops, || general_mat_mul(1.0, &av, &bv, 0.0, &mut cc));
        println!("{label:<18} {m:>5} {n:>5} {k:>5}  {g:>10.1} {mm:>16.1}");
    }
}
