//! Conv and linear kernels in bf16 against the same kernels in fp32, element by element.
//!
//! Every output of these kernels is a sum of K products plus terms computed identically in both
//! precisions (bias, bias gradient, col2im's fp32 additions of already-rounded sums). As in
//! tests/bf16_gemm.rs, rounding both factors to bf16 (u = 2^-8) moves a product by at most
//! (2u + u^2)|a||b| and the fp32 sums (u32 = 2^-24) add at most (K + 2) u32 sum|a||b| in each
//! kernel, so |bf16 - fp32| <= (2u + u^2 + 2 (K + 2) u32) * S with S the same kernel run in fp32
//! on |x|, |w|, |dy| (S bounds sum|a||b| for every output; col2im adds up to k*k such sums, all
//! inside S). K is the longest reduction: Cin*k*k for y, Cout*k*k for dx, N*Ho*Wo for dW.

use mdc::base::rng::Rng;
use mdc::kernels::bf16::{self, Precision};
use mdc::kernels::Workers;
use mdc::kernels::{conv, linear};

const U_BF16: f64 = 1.0 / 256.0;
const U_F32: f64 = 1.0 / 16_777_216.0;

pub(crate) fn random(rng: &mut Rng, len: usize) -> Vec<f32> {
    (0..len).map(|_| rng.normal() as f32).collect()
}

pub(crate) fn abs(v: &[f32]) -> Vec<f32> {
    v.iter().map(|x| x.abs()).collect()
}

fn workers(precision: Precision, column_budget: usize) -> Workers<f32> {
    let mut w = Workers::new();
    w.precision = precision;
    w.column_budget = column_budget;
    w
}

/// Asserts |got - want| <= bound(k) * s element by element; returns the largest error relative
/// to its bound (so a caller can see the bound is not vacuous).
pub(crate) fn check(what: &str, got: &[f32], want: &[f32], s: &[f32], k: usize) -> f64 {
    let rel = 2.0 * U_BF16 + U_BF16 * U_BF16 + 2.0 * (k as f64 + 2.0) * U_F32;
    let mut worst = 0f64;
    for (i, ((&g, &w), &s)) in got.iter().zip(want).zip(s).enumerate() {
        let bound = rel * s as f64 * (1.0 + 1e-5) + 1e-30;
        let err = (g as f64 - w as f64).abs();
        assert!(err <= bound, "{what}[{i}]: bf16 {g} fp32 {w} differ by {err:e} > {bound:e}");
        worst = worst.max(err / bound);
    }
    worst
}

struct ConvRun {
    y: Vec<f32>,
    dx: Vec<f32>,
    dw: Vec<f32>,
    db: Vec<f32>,
}

fn run_conv(
    p: Precision,
    g: &conv::ConvGeom,
    n: usize,
    x: &[f32],
    w: &[f32],
    b: &[f32],
    dy: &[f32],
) -> ConvRun {
    // a small column budget so the convs run in several bands
    let mut wk = workers(p, 2048);
    let mut y = vec![0f32; n * g.cout * g.ho * g.wo];
    conv::forward(&mut wk, g, n, x, w, b, &mut y);
    let (mut dx, mut dw, mut db) = (vec![0f32; x.len()], vec![0f32; w.len()], vec![0f32; b.len()]);
    conv::backward(&mut wk, g, n, x, w, dy, Some(&mut dx), &mut dw, &mut db);
    ConvRun { y, dx, dw, db }
}

#[test]
fn conv_forward_and_gradients_in_bf16_are_within_the_rounding_bound() {
    eprintln!("bf16 products on {:?}", bf16::Kernel::best());
    let geom = |cin, cout, k, stride, pad, h: usize| {
        let ho = (h + 2 * pad - k) / stride + 1;
        conv::ConvGeom { cin, cout, k, stride, pad, h, w: h, ho, wo: ho }
    };
    let cases = [
        geom(16, 8, 3, 1, 1, 12), // same size, narrowing: dx by the flipped-kernel conv
        geom(5, 24, 3, 1, 1, 9),  // widening: dx by col2im, odd channel counts
        geom(8, 8, 3, 2, 1, 10),  // strided (downsample)
        geom(12, 20, 1, 1, 0, 7), // pointwise
        // 3x3 same-size with 8+ channel pairs: implicit GEMMs (forward, and dx as the
        // flipped conv when cout has 8+ pairs too), widths around the tiles (16 rows, 16 pairs)
        geom(32, 32, 3, 1, 1, 7),
        geom(40, 24, 3, 1, 1, 5),
        geom(16, 64, 3, 1, 1, 6),
        geom(64, 17, 3, 1, 1, 9),
        // stride-2 downsamples with 8+ channel pairs: forward and dW implicit on the phase grids,
        // dx by its four phases (dy with 8+ pairs), or by col2im (fewer)
        geom(32, 32, 3, 2, 1, 8),
        geom(40, 17, 3, 2, 1, 6),
        geom(32, 8, 3, 2, 1, 8),
    ];
    let mut worst = 0f64;
    // three images (split across the workers), and one (its products split across the threads)
    for (c, (g, n)) in cases.iter().flat_map(|g| [(g, 3), (g, 1)]).enumerate() {
        let mut rng = Rng::new(c as u64);
        let x = random(&mut rng, n * g.cin * g.h * g.w);
        let w = random(&mut rng, g.cout * g.kdim());
        let b = random(&mut rng, g.cout);
        let dy = random(&mut rng, n * g.cout * g.ho * g.wo);
        let fp32 = run_conv(Precision::Fp32, g, n, &x, &w, &b, &dy);
        let got = run_conv(Precision::Bf16, g, n, &x, &w, &b, &dy);
        let zero = vec![0f32; g.cout];
        let s = run_conv(Precision::Fp32, g, n, &abs(&x), &abs(&w), &zero, &abs(&dy));
        worst = worst.max(check(&format!("case {c} y"), &got.y, &fp32.y, &s.y, g.kdim()));
        worst = worst.max(check(&format!("case {c} dx"), &got.dx, &fp32.dx, &s.dx, g.cout * g.k * g.k));
        worst = worst.max(check(&format!("case {c} dw"), &got.dw, &fp32.dw, &s.dw, n * g.positions()));
        assert_eq!(got.db, fp32.db, "the bias gradient is an fp32 reduction in both");
    }
    assert!(worst > 1e-3, "bf16 results are no different from fp32 (worst error {worst} of the bound)");
}

#[test]
fn linear_forward_and_gradients_in_bf16_are_within_the_rounding_bound() {
    eprintln!("bf16 products on {:?}", bf16::Kernel::best());
    let (n, fin, fout) = (5, 37, 70);
    let mut rng = Rng::new(9);
    let (x, w, b, dy) = (
        random(&mut rng, n * fin),
        random(&mut rng, fout * fin),
        random(&mut rng, fout),
        random(&mut rng, n * fout),
    );
    let run = |p: Precision, x: &[f32], w: &[f32], b: &[f32], dy: &[f32]| {
        let mut wk = workers(p, 1 << 20);
        let mut y = vec![0f32; n * fout];
        linear::forward(&mut wk, n, fin, fout, x, w, b, &mut y);
        let (mut dx, mut dw, mut db) = (vec![0f32; n * fin], vec![0f32; fout * fin], vec![0f32; fout]);
        linear::backward(&mut wk, n, fin, fout, x, w, dy, Some(&mut dx), &mut dw, &mut db);
        (y, dx, dw, db)
    };
    let fp32 = run(Precision::Fp32, &x, &w, &b, &dy);
    let got = run(Precision::Bf16, &x, &w, &b, &dy);
    let s = run(Precision::Fp32, &abs(&x), &abs(&w), &vec![0f32; fout], &abs(&dy));
    check("y", &got.0, &fp32.0, &s.0, fin);
    check("dx", &got.1, &fp32.1, &s.1, fout);
    check("dw", &got.2, &fp32.2, &s.2, n);
    assert_eq!(got.3, fp32.3);
}
