//! 3x3 same-size convolutions (stride 1, padding 1) by Winograd's minimal filtering F(2x2, 3x3)
//! (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", 2016), the fp32 and f64
//! path: 16 multiplications per 2x2 outputs and input channel where im2col + GEMM does 36.
//!
//! Each 2x2 output tile reads a 4x4 input tile (tiles overlap by 2). Per tile, with d the input
//! tile, g a 3x3 kernel and dY the tile's output gradient:
//!   V = B^T d B,  U = G g G^T,  M = sum over input channels of U . V,  Y = A^T M A  (forward)
//!   dM = A dY A^T,  dU += dM . V,  dV = sum over output channels of U . dM,  dd = B dV B^T,
//!   dg = G^T dU G  (backward; `.` is the element-wise product).
//! The sums over channels of element-wise products are 16 matrix products, one per element of the
//! 4x4 tile ("xi"), every transformed value laid out [xi, channel, tile]:
//! M[xi] [Cout, T] = U[xi] [Cout, Cin] x V[xi] [Cin, T] over T tiles, and backward
//! dU[xi]^T [Cin, Cout] += V[xi] [Cin, T] x dM[xi]^T and dV[xi] [Cin, T] = U[xi]^T x dM[xi] [Cout, T]
//! (U^T stored as such for the backward).
//! The transforms are additions and halvings only.
//!
//! It is the default for fp32 where a call has at least [`MIN_TILES`] output tiles
//! (`MDC_FP32_CONV=im2col` picks the im2col path to compare): it makes the fp32 training step of
//! `unet-rgb32.toml` about a fifth faster on a 2-core AMD EPYC Zen 3, family 25 model 1
//! (docs/experiments/benchmarks.md). bf16 keeps
//! its own kernels (im2col and implicit GEMM); Winograd in bf16 is untried.
//!
//! Tiles are taken in bands of tile rows across a worker's images, so that a band's transformed
//! values fit in cache (`Workers::column_budget`) and a small image's few tiles still make a
//! product wide enough to run at speed. An odd height or width makes a last tile half outside the
//! image: its input is zero there and its outputs there are dropped.
//!
//! Rounding differs from im2col's (the transformed values and the sum over 16 products round on
//! their own): the tests compare both against each other in f64, where they agree to 1e-12, and
//! in f32 within a bound from the reduction length.

mod transforms;

use super::conv_geom::ConvGeom;
use super::gemm::{matmul_strided, Tr};
use super::real::Real;
use super::workspace::{sized, sum_into_first, Workers};
use transforms::{tiles, Band, XI};

/// Whether fp32 (and f64) 3x3 same-size convs run here, as `MDC_FP32_CONV` asks: unset or
/// "winograd" (the default), or "im2col" (the im2col + GEMM path, to compare against); read once.
pub fn enabled_by_env() -> Result<bool, String> {
    static ASKED: std::sync::OnceLock<Result<bool, String>> = std::sync::OnceLock::new();
    ASKED
        .get_or_init(|| match std::env::var("MDC_FP32_CONV").as_deref() {
            Err(_) | Ok("winograd") => Ok(true),
            Ok("im2col") => Ok(false),
            Ok(other) => Err(format!("MDC_FP32_CONV=\"{other}\": expected winograd or im2col (or unset)")),
        })
        .clone()
}

/// Whether this conv can run here: 3x3, stride 1, padding 1, output the input's size.
pub(super) fn applies(g: &ConvGeom) -> bool {
    g.k == 3 && g.pad == 1 && g.same_size()
}

/// Output tiles of a call on `batch` images.
pub(super) fn tiles_in(g: &ConvGeom, batch: usize) -> usize {
    let (th, tw) = tiles(g);
    batch * th * tw
}

/// Fewest tiles in a call for Winograd to run it (fewer take im2col). Below this its fixed costs
/// (the kernels' transform, 16 products too narrow to run at speed) outweigh what it saves:
/// `cargo bench --bench conv_backward` on a 2-core AMD EPYC Zen 3 (family 25 model 1; 2 threads,
/// fastest of 30; ranges over 3 to 5 sittings), its time over im2col's: at 4 images, 0.6-0.8x
/// forward and 0.55-0.97x backward at 32x32 (1024 tiles), 0.84-1.1x at 16x16 (256), 0.95-1.5x at
/// 8x8 (64), 1.6-3.5x at 4x4 (16); at 32 images, 0.5-0.9x at 8x8 (512), 0.9-1.5x forward and
/// 0.8-1.4x backward at 4x4 (128).
pub(super) const MIN_TILES: usize = 512;

/// Tile rows per band: as many as keep `per_tile` transformed values a tile within the budget.
fn band_rows(g: &ConvGeom, per_tile: usize, budget: usize, total_rows: usize) -> usize {
    let (_, tw) = tiles(g);
    (budget / (XI * per_tile * tw).max(1)).clamp(1, total_rows.max(1))
}

/// y [N, Cout, H, W] = conv(x, weight) + bias for a conv [`applies`] to.
pub fn forward<T: Real>(
    workers: &mut Workers<T>,
    g: &ConvGeom,
    batch: usize,
    x: &[T],
    weight: &[T],
    bias: &[T],
    y: &mut [T],
) {
    debug_assert!(applies(g));
    let (cin, cout) = (g.cin, g.cout);
    let mut shared = std::mem::take(&mut workers.shared);
    let u = sized(&mut shared, XI * cout * cin);
    transforms::transform_weights(g, weight, u, false);
    let u: &[T] = u;
    let budget = workers.column_budget;
    workers.par_images(batch, y, g.out_len(), |images, y, s| {
        let (th, tw) = tiles(g);
        let total = images.len() * th;
        let rows_per_band = band_rows(g, cin + cout, budget, total);
        let tb_max = rows_per_band * tw;
        let threads = s.gemm_threads;
        let v_and_scratch = sized(&mut s.a, XI * cin * tb_max + transforms::transform_scratch(g));
        let (v, scratch) = v_and_scratch.split_at_mut(XI * cin * tb_max);
        let m = sized(&mut s.b, XI * cout * tb_max);
        let x = &x[images.start * g.in_len()..images.end * g.in_len()];
        for r0 in (0..total).step_by(rows_per_band) {
            let r1 = (r0 + rows_per_band).min(total);
            let band = Band { r0, r1, tb: (r1 - r0) * tw };
            transforms::inputs(g, band, x, v, scratch);
            let tb = band.tb;
            for xi in 0..XI {
                let (mx, ux, vx) = (&mut m[xi * cout * tb..], &u[xi * cout * cin..], &v[xi * cin * tb..]);
                matmul_strided(mx, tb, cout, tb, cin, ux, cin, Tr::No, vx, tb, Tr::No, false, threads);
            }
            transforms::outputs(g, band, m, bias, y, scratch);
        }
    });
    workers.shared = shared;
}

/// Accumulates dweight and dbias and, when asked, writes dx (overwritten) for a conv
/// [`applies`] to.
#[allow(clippy::too_many_arguments)]
pub fn backward<T: Real>(
    workers: &mut Workers<T>,
    g: &ConvGeom,
    batch: usize,
    x: &[T],
    weight: &[T],
    dy: &[T],
    dx: Option<&mut [T]>,
    dweight: &mut [T],
    dbias: &mut [T],
) {
    debug_assert!(applies(g));
    let (cin, cout) = (g.cin, g.cout);
    let want_dx = dx.is_some();
    let (dx, per_image) = g.input_grad_out(dx);
    let mut shared = std::mem::take(&mut workers.shared);
    // U^T [xi, ci, co] is needed for dx only
    let u = sized(&mut shared, if want_dx { XI * cout * cin } else { 0 });
    if want_dx {
        transforms::transform_weights(g, weight, u, true);
    }
    let u: &[T] = u;
    let budget = workers.column_budget;
    let partial_len = XI * cin * cout + cout;
    let workers_used = workers.par_images(batch, dx, per_image, |images, dx, s| {
        let (th, tw) = tiles(g);
        let total = images.len() * th;
        let per_tile = cin + cout + if want_dx { cin } else { 0 };
        let rows_per_band = band_rows(g, per_tile, budget, total);
        let tb_max = rows_per_band * tw;
        let partial = sized(&mut s.c, partial_len);
        partial.fill(T::ZERO);
        let (dut, db) = partial.split_at_mut(XI * cin * cout);
        crate::kernels::with_avx2(|| {
            for n in images.clone() {
                crate::kernels::add_plane_sums(db, &dy[n * g.out_len()..][..g.out_len()]);
            }
        });
        if want_dx {
            dx.fill(T::ZERO);
        }
        let dv_len = if want_dx { XI * cin * tb_max } else { 0 };
        let threads = s.gemm_threads;
        let a = sized(&mut s.a, XI * cin * tb_max + dv_len + transforms::transform_scratch(g));
        let dm = sized(&mut s.b, XI * cout * tb_max);
        let (v, rest) = a.split_at_mut(XI * cin * tb_max);
        let (dv, scratch) = rest.split_at_mut(dv_len);
        let x = &x[images.start * g.in_len()..images.end * g.in_len()];
        let dy = &dy[images.start * g.out_len()..images.end * g.out_len()];
        for r0 in (0..total).step_by(rows_per_band) {
            let r1 = (r0 + rows_per_band).min(total);
            let band = Band { r0, r1, tb: (r1 - r0) * tw };
            transforms::inputs(g, band, x, v, scratch);
            transforms::output_grads(g, band, dy, dm, scratch);
            let tb = band.tb;
            for xi in 0..XI {
                let (vx, dmx) = (&v[xi * cin * tb..], &dm[xi * cout * tb..]);
                let dux = &mut dut[xi * cin * cout..];
                matmul_strided(dux, cout, cin, cout, tb, vx, tb, Tr::No, dmx, tb, Tr::Yes, true, threads);
                if want_dx {
                    let (dvx, ux) = (&mut dv[xi * cin * tb..], &u[xi * cout * cin..]);
                    matmul_strided(dvx, tb, cin, tb, cout, ux, cout, Tr::No, dmx, tb, Tr::No, false, threads);
                }
            }
            if want_dx {
                transforms::input_grads(g, band, dv, dx, scratch);
            }
        }
    });
    workers.shared = shared;
    // the workers' dU^T summed into the first's (in worker order), then taken back to 3x3
    let mut partials: Vec<&mut [T]> =
        workers.scratch[..workers_used].iter_mut().map(|s| &mut s.c[..partial_len]).collect();
    sum_into_first(&mut partials);
    let (dut, db) = partials[0].split_at(XI * cin * cout);
    transforms::add_weight_grad(g, dut, dweight);
    for (d, &p) in dbias.iter_mut().zip(db) {
        *d += p;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::conv;

    /// A reproducible pseudo-random fill in [-1, 1).
    fn fill<T: Real>(len: usize, seed: u64) -> Vec<T> {
        let mut rng = crate::base::rng::Rng::new(seed);
        (0..len).map(|_| T::from_f64(rng.uniform_range(-1.0, 1.0))).collect()
    }

    struct Run<T> {
        y: Vec<T>,
        dx: Vec<T>,
        dw: Vec<T>,
        db: Vec<T>,
    }

    /// Forward and backward of one conv, by Winograd or by im2col, into buffers that start dirty.
    fn run<T: Real>(g: &ConvGeom, batch: usize, winograd: bool, budget: usize) -> Run<T> {
        let mut workers = Workers::<T>::new();
        workers.winograd_min_tiles = Some(if winograd { 0 } else { usize::MAX });
        workers.column_budget = budget;
        let x = fill::<T>(batch * g.in_len(), 1);
        let w = fill::<T>(g.cout * g.cin * 9, 2);
        let b = fill::<T>(g.cout, 3);
        let dy = fill::<T>(batch * g.out_len(), 4);
        let mut y = vec![T::from_f64(7.0); batch * g.out_len()];
        conv::forward(&mut workers, g, batch, &x, &w, &b, &mut y);
        let mut dx = vec![T::from_f64(-3.0); batch * g.in_len()];
        // the parameter gradients accumulate onto what is there
        let mut dw = vec![T::from_f64(0.25); w.len()];
        let mut db = vec![T::from_f64(0.5); g.cout];
        conv::backward(&mut workers, g, batch, &x, &w, &dy, Some(&mut dx), &mut dw, &mut db);
        // without dx: the same parameter gradients
        let (mut dw2, mut db2) = (vec![T::from_f64(0.25); w.len()], vec![T::from_f64(0.5); g.cout]);
        conv::backward(&mut workers, g, batch, &x, &w, &dy, None, &mut dw2, &mut db2);
        let bits = |v: &[T]| v.iter().map(|x| x.to_f64().to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&dw), bits(&dw2), "dweight with and without dx");
        assert_eq!(bits(&db), bits(&db2), "dbias with and without dx");
        Run { y, dx, dw, db }
    }

    fn geom(cin: usize, cout: usize, h: usize, w: usize) -> ConvGeom {
        ConvGeom { cin, cout, k: 3, stride: 1, pad: 1, h, w, ho: h, wo: w }
    }

    /// (cin, cout, h, w): odd and even sizes (a half tile at the right and bottom edges), a
    /// single pixel, a single row, more output than input channels and the reverse.
    /// Rows of 13 and 9 tiles take the transforms' chunks of 8, 4 and 1 tiles (`by_chunks!`).
    const SHAPES: [(usize, usize, usize, usize); 9] = [
        (3, 5, 7, 6),
        (4, 4, 1, 1),
        (2, 3, 5, 5),
        (8, 16, 8, 8),
        (16, 4, 6, 9),
        (5, 2, 1, 7),
        (6, 7, 2, 3),
        (2, 3, 3, 26),
        (3, 2, 4, 17),
    ];

    fn max_diff<T: Real>(a: &[T], b: &[T]) -> f64 {
        assert_eq!(a.len(), b.len());
        a.iter().zip(b).map(|(x, y)| (x.to_f64() - y.to_f64()).abs()).fold(0.0, f64::max)
    }

    /// In f64 both ways compute the same sums, rounded differently: they agree to 1e-12 for
    /// values of order 1 to 100, in bands of one tile row (budget 1) and whole images.
    #[test]
    fn winograd_matches_im2col_in_f64() {
        for (cin, cout, h, w) in SHAPES {
            let g = geom(cin, cout, h, w);
            for budget in [1, DEFAULT_BUDGET] {
                let (a, b) = (run::<f64>(&g, 3, true, budget), run::<f64>(&g, 3, false, budget));
                let what = format!("{cin}->{cout} {h}x{w}, budget {budget}");
                assert!(max_diff(&a.y, &b.y) < 1e-12, "y {what}: {}", max_diff(&a.y, &b.y));
                assert!(max_diff(&a.dx, &b.dx) < 1e-12, "dx {what}: {}", max_diff(&a.dx, &b.dx));
                assert!(max_diff(&a.dw, &b.dw) < 1e-11, "dw {what}: {}", max_diff(&a.dw, &b.dw));
                assert!(max_diff(&a.db, &b.db) < 1e-12, "db {what}: {}", max_diff(&a.db, &b.db));
            }
        }
    }

    const DEFAULT_BUDGET: usize = crate::kernels::workspace::DEFAULT_COLUMN_BUDGET;

    /// In f32, against the f64 result: errors of the order of f32's rounding times the sums'
    /// lengths and the transforms' growth (values up to 4 x 4 times the input's), not more.
    #[test]
    fn winograd_in_f32_is_as_accurate_as_its_rounding_allows() {
        for (cin, cout, h, w) in SHAPES {
            let g = geom(cin, cout, h, w);
            let exact = run::<f64>(&g, 2, false, DEFAULT_BUDGET);
            let got = run::<f32>(&g, 2, true, DEFAULT_BUDGET);
            let eps = f32::EPSILON as f64;
            // each output sums 9 cin products of values below 1; the transforms add 16 terms
            let bound = |terms: usize| 16.0 * 4.0 * eps * terms as f64;
            let cast = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<f64>>();
            let what = format!("{cin}->{cout} {h}x{w}");
            let tiles = 2 * h.div_ceil(2) * w.div_ceil(2);
            for (name, a, b, terms) in [
                ("y", cast(&got.y), &exact.y, 9 * cin),
                ("dx", cast(&got.dx), &exact.dx, 9 * cout),
                ("dw", cast(&got.dw), &exact.dw, 4 * tiles),
                ("db", cast(&got.db), &exact.db, 2 * h * w),
            ] {
                let d = max_diff(&a, b);
                assert!(d < bound(terms), "{name} {what}: off by {d:e}, bound {:e}", bound(terms));
            }
        }
    }
}
