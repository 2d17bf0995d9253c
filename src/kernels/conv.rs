//! 2-D convolution as im2col + GEMM, per image, images split across threads.
//! Forward: Y[n] = W [Cout, K] x cols(X[n]) [K, P] + b, with K = Cin*k*k and P = Ho*Wo, done in
//! bands of output rows whose columns fit in cache (see `Workers::column_budget`).
//! Backward: dW^T += cols x dY[n]^T, db += rowsum(dY[n]), dX[n] = col2im(W^T x dY[n]), or for
//! same-size convs that do not widen the channels, dX[n] = conv(dY[n], flipped W).
//! A 1x1 stride-1 unpadded conv reads X[n] as its own columns (no im2col).
//! In bf16, 3x3 same-size convs skip all this: see `conv_amx.rs`.

use super::conv_amx;
use super::conv_geom::flip_kernel;
pub use super::conv_geom::ConvGeom;
use super::winograd;
use crate::kernels::bf16::Precision;
use crate::kernels::gemm::{matmul_at, matmul_rows_a, Lhs, Tr};
use crate::kernels::real::Real;
use crate::kernels::workspace::{sized, sum_into_first, Workers};

/// Columns of output rows `oy0..oy1`: cols[(ci*k + ky)*k + kx, (oy - oy0)*Wo + ox] =
/// x[ci, oy*s + ky - p, ox*s + kx - p] (0 outside the image).
pub fn im2col<T: Real>(g: &ConvGeom, x: &[T], oy0: usize, oy1: usize, cols: &mut [T]) {
    let nb = (oy1 - oy0) * g.wo;
    for (row, dst) in cols.chunks_exact_mut(nb).take(g.kdim()).enumerate() {
        im2col_row(g, x, oy0, oy1, row, dst);
    }
}

/// Row `row` of [`im2col`]'s columns (`(oy1 - oy0) * Wo` elements).
#[inline]
pub fn im2col_row<T: Real>(g: &ConvGeom, x: &[T], oy0: usize, oy1: usize, row: usize, dst: &mut [T]) {
    let (k, hw) = (g.k, g.h * g.w);
    let (ci, ky, kx) = (row / (k * k), row / k % k, row % k);
    let plane = &x[ci * hw..(ci + 1) * hw];
    if g.same_size() {
        return im2col_same_row(g, plane, oy0, oy1, ky, kx, dst);
    }
    let (s, p) = (g.stride, g.pad);
    let (lo, hi) = g.valid_cols(kx);
    for oy in oy0..oy1 {
        let d = &mut dst[(oy - oy0) * g.wo..(oy - oy0 + 1) * g.wo];
        let iy = (oy * s + ky).wrapping_sub(p);
        if iy >= g.h {
            d.fill(T::ZERO);
            continue;
        }
        let src = &plane[iy * g.w..(iy + 1) * g.w];
        d[..lo].fill(T::ZERO);
        d[hi..].fill(T::ZERO);
        if lo >= hi {
            continue;
        }
        if s == 1 {
            d[lo..hi].copy_from_slice(&src[lo + kx - p..hi + kx - p]);
        } else {
            for (ox, v) in d[lo..hi].iter_mut().enumerate() {
                *v = src[(lo + ox) * s + kx - p];
            }
        }
    }
}

/// The flat range `lo..hi` of a band of `len` positions starting at plane index `base` whose
/// shifted source `base + i + shift` lies inside a plane of `hw` elements.
fn inside(base: usize, len: usize, shift: isize, hw: usize) -> (usize, usize) {
    let start = base as isize + shift;
    let lo = (-start).clamp(0, len as isize) as usize;
    let hi = (hw as isize - start).clamp(0, len as isize) as usize;
    (lo, hi.max(lo))
}

/// Columns `c0..c1` of each image row whose source wrapped to the neighbouring row for a
/// horizontal offset `dx`.
fn wrapped(w: usize, dx: isize) -> (usize, usize) {
    if dx > 0 {
        (w - dx as usize, w)
    } else {
        (0, (-dx) as usize)
    }
}

/// Zeroes columns `c0..c1` of every row (`w` wide) of `rows`. Usually one column, so written as
/// stores: a `fill` per row becomes a memset call per row, which cost 3% of a training step.
fn zero_columns<T: Real>(rows: &mut [T], w: usize, (c0, c1): (usize, usize)) {
    if c1 == c0 + 1 {
        for r in rows.chunks_exact_mut(w) {
            r[c0] = T::ZERO;
        }
    } else if c0 < c1 {
        for r in rows.chunks_exact_mut(w) {
            r[c0..c1].fill(T::ZERO);
        }
    }
}

/// [`im2col_row`] for stride 1 and an output the size of the input: the row is the image plane
/// shifted by (ky - p, kx - p), so it is one long copy, then the columns that wrapped around a
/// row edge are zeroed (row-by-row copies cost more in calls than in data).
fn im2col_same_row<T: Real>(
    g: &ConvGeom,
    plane: &[T],
    oy0: usize,
    oy1: usize,
    ky: usize,
    kx: usize,
    dst: &mut [T],
) {
    let (p, w, hw) = (g.pad as isize, g.w, g.h * g.w);
    let (base, nb) = (oy0 * w, (oy1 - oy0) * w);
    let shift = (ky as isize - p) * w as isize + (kx as isize - p);
    let (lo, hi) = inside(base, nb, shift, hw);
    dst[..lo].fill(T::ZERO);
    dst[hi..].fill(T::ZERO);
    if lo < hi {
        let src = (base as isize + lo as isize + shift) as usize;
        dst[lo..hi].copy_from_slice(&plane[src..src + (hi - lo)]);
    }
    zero_columns(dst, w, wrapped(w, kx as isize - p));
}

/// The adjoint of [`im2col`] for output rows `oy0..oy1`: adds every column entry back onto the
/// pixel it came from (dx is accumulated, not overwritten). Destroys `cols` (the same-size path
/// zeroes the entries that fall outside the image).
pub fn col2im<T: Real>(g: &ConvGeom, cols: &mut [T], oy0: usize, oy1: usize, dx: &mut [T]) {
    if g.same_size() {
        return col2im_same(g, cols, oy0, oy1, dx);
    }
    let (k, s, p, hw, nb) = (g.k, g.stride, g.pad, g.h * g.w, (oy1 - oy0) * g.wo);
    for ci in 0..g.cin {
        let plane = &mut dx[ci * hw..(ci + 1) * hw];
        for ky in 0..k {
            for kx in 0..k {
                let row = (ci * k + ky) * k + kx;
                let src = &cols[row * nb..(row + 1) * nb];
                let (lo, hi) = g.valid_cols(kx);
                for oy in oy0..oy1 {
                    let iy = (oy * s + ky).wrapping_sub(p);
                    if iy >= g.h || lo >= hi {
                        continue;
                    }
                    let srow = &src[(oy - oy0) * g.wo..(oy - oy0 + 1) * g.wo];
                    let d = &mut plane[iy * g.w..(iy + 1) * g.w];
                    if s == 1 {
                        for (dv, &sv) in d[lo + kx - p..hi + kx - p].iter_mut().zip(&srow[lo..hi]) {
                            *dv += sv;
                        }
                    } else {
                        for ox in lo..hi {
                            d[ox * s + kx - p] += srow[ox];
                        }
                    }
                }
            }
        }
    }
}

/// [`col2im`] for stride 1 and an output the size of the input: each row of the band's columns
/// is added onto the shifted plane as one long add, after zeroing the entries whose pixel lies
/// off the left or right edge (they would otherwise wrap onto the neighbouring row).
fn col2im_same<T: Real>(g: &ConvGeom, cols: &mut [T], oy0: usize, oy1: usize, dx: &mut [T]) {
    let (k, p, w, hw) = (g.k, g.pad as isize, g.w, g.h * g.w);
    let (base, nb) = (oy0 * w, (oy1 - oy0) * w);
    for ci in 0..g.cin {
        let plane = &mut dx[ci * hw..(ci + 1) * hw];
        for ky in 0..k {
            for kx in 0..k {
                let row = (ci * k + ky) * k + kx;
                let src = &mut cols[row * nb..(row + 1) * nb];
                zero_columns(src, w, wrapped(w, kx as isize - p));
                let shift = (ky as isize - p) * w as isize + (kx as isize - p);
                let (lo, hi) = inside(base, nb, shift, hw);
                if lo < hi {
                    let d = (base as isize + lo as isize + shift) as usize;
                    for (dv, &v) in plane[d..d + (hi - lo)].iter_mut().zip(&src[lo..hi]) {
                        *dv += v;
                    }
                }
            }
        }
    }
}

/// y [N, Cout, Ho, Wo] = conv(x [N, Cin, H, W], weight [Cout, Cin, k, k]) + bias.
pub fn forward<T: Real>(
    workers: &mut Workers<T>,
    g: &ConvGeom,
    batch: usize,
    x: &[T],
    weight: &[T],
    bias: &[T],
    y: &mut [T],
) {
    if let Some(implicit) = g.implicit::<T>(workers.precision) {
        return conv_amx::forward(workers, g, &implicit, batch, x, weight, bias, y);
    }
    if runs_by_winograd(workers, g, batch) {
        return winograd::forward(workers, g, batch, x, weight, bias, y);
    }
    let (kd, pos) = (g.kdim(), g.positions());
    let rows = g.band_rows(kd, workers.column_budget);
    // the weights are converted (bf16) once for all images and bands
    let mut packed = std::mem::take(&mut workers.shared_packed);
    let w = Lhs::new(workers.precision, g.cout, kd, weight, kd, Tr::No, &mut packed);
    workers.par_images(batch, y, g.out_len(), |images, y, s| {
        for (i, n) in images.enumerate() {
            let xn = &x[n * g.in_len()..(n + 1) * g.in_len()];
            let yn = &mut y[i * g.out_len()..(i + 1) * g.out_len()];
            for (row, &b) in yn.chunks_exact_mut(pos).zip(bias) {
                row.fill(b);
            }
            if g.pointwise() {
                w.times(yn, pos, pos, xn, pos, Tr::No, true, s.gemm_threads, &mut s.pb);
                continue;
            }
            for oy0 in (0..g.ho).step_by(rows) {
                let oy1 = (oy0 + rows).min(g.ho);
                let nb = (oy1 - oy0) * g.wo;
                let band = &mut yn[oy0 * g.wo..];
                let fill = |r, out: &mut [T]| im2col_row(g, xn, oy0, oy1, r, out);
                w.times_rows(band, pos, nb, fill, true, s.gemm_threads, &mut s.a, &mut s.pb);
            }
        }
    });
    workers.shared_packed = packed;
}

/// Accumulates dweight and dbias; writes dx when asked (the image input needs none).
/// Per image and band of output rows: dW^T += cols x dY^T (K x P times P x Cout; both operands
/// row-major, the shape the `gemm` crate runs fastest, where dY cols^T with a transposed operand
/// runs ~4x slower), then dx from dY (see below).
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
    if let Some(plan) = conv_amx::BackwardPlan::new::<T>(g, workers.precision, dx.is_some()) {
        if !plan.input_grad_by_im2col() {
            return conv_amx::backward(workers, g, &plan, batch, x, weight, dy, dx, dweight, dbias);
        }
        conv_amx::backward(workers, g, &plan, batch, x, weight, dy, None, dweight, dbias);
        if let Some(dx) = dx {
            input_grad(workers, g, batch, weight, dy, dx);
        }
        return;
    }
    if runs_by_winograd(workers, g, batch) {
        return winograd::backward(workers, g, batch, x, weight, dy, dx, dweight, dbias);
    }
    let (kd, pos, cout) = (g.kdim(), g.positions(), g.cout);
    let want_dx = dx.is_some();
    let (dx, per_image) = g.input_grad_out(dx);
    // When the conv keeps the size and does not widen the channels, dx is itself a convolution
    // of dy with the flipped, channel-transposed kernel: its columns (Cout*k*k rows) are no larger
    // than dcols (Cin*k*k rows), its GEMM is compute-bound (depth Cout*k*k, not Cout) and no
    // scatter-add (col2im) is needed. Its output rows are the conv's output rows (same size).
    let flipped = want_dx && !g.pointwise() && g.same_size() && cout <= g.cin;
    let mut shared = std::mem::take(&mut workers.shared);
    let wflip: &[T] = if flipped {
        let w = sized(&mut shared, g.cin * cout * g.k * g.k);
        flip_kernel(g, weight, w);
        w
    } else {
        &[]
    };
    // read only when `flipped` (same size: padding = (k - 1) / 2)
    let gt = g.flipped();
    let rows = g.band_rows(kd, workers.column_budget);
    let precision = workers.precision;
    // the left operand of dx's product, converted (bf16) once for all images and bands
    let mut packed = std::mem::take(&mut workers.shared_packed);
    let wdx = if flipped {
        Lhs::new(precision, g.cin, gt.kdim(), wflip, gt.kdim(), Tr::No, &mut packed)
    } else {
        Lhs::new(precision, kd, cout, weight, kd, Tr::Yes, &mut packed)
    };
    let workers_used = workers.par_images(batch, dx, per_image, |images, dx, s| {
        super::with_avx2(|| {
            let partial = sized(&mut s.c, kd * cout + cout);
            partial.fill(T::ZERO);
            let (dwt, db) = partial.split_at_mut(kd * cout);
            for (i, n) in images.enumerate() {
                let xn = &x[n * g.in_len()..(n + 1) * g.in_len()];
                let dyn_ = &dy[n * g.out_len()..(n + 1) * g.out_len()];
                super::add_plane_sums(db, dyn_);
                let dyt = sized(&mut s.b, pos * cout);
                transpose(dyn_, cout, pos, dyt);
                let mut dxn = want_dx.then(|| &mut dx[i * g.in_len()..(i + 1) * g.in_len()]);
                let threads = s.gemm_threads;
                if g.pointwise() {
                    add_weight_grad(precision, (&mut s.pa, &mut s.pb), dwt, cout, xn, dyt, threads);
                    if let Some(dxn) = dxn {
                        wdx.times(dxn, pos, pos, dyn_, pos, Tr::No, false, threads, &mut s.pb);
                    }
                    continue;
                }
                if !flipped {
                    if let Some(d) = dxn.as_deref_mut() {
                        d.fill(T::ZERO);
                    }
                }
                for oy0 in (0..g.ho).step_by(rows) {
                    let oy1 = (oy0 + rows).min(g.ho);
                    let nb = (oy1 - oy0) * g.wo;
                    // dW^T += cols x dY^T, the columns made (and in bf16 converted) row by row
                    let dyt_band = (&dyt[oy0 * g.wo * cout..oy1 * g.wo * cout], cout, Tr::No);
                    let fill = |r, out: &mut [T]| im2col_row(g, xn, oy0, oy1, r, out);
                    let bufs = (&mut s.pa, &mut s.pb);
                    matmul_rows_a(
                        precision,
                        bufs,
                        dwt,
                        cout,
                        (kd, cout, nb),
                        fill,
                        dyt_band,
                        true,
                        threads,
                        &mut s.a,
                    );
                    let Some(dxn) = dxn.as_deref_mut() else { continue };
                    if flipped {
                        let band = &mut dxn[oy0 * g.w..];
                        let fill = |r, out: &mut [T]| im2col_row(&gt, dyn_, oy0, oy1, r, out);
                        wdx.times_rows(band, pos, nb, fill, false, threads, &mut s.a, &mut s.pb);
                    } else {
                        // dcols [K, band] = W^T dY[:, band], then scattered back onto dx
                        let dcols = sized(&mut s.a, kd * nb);
                        let dy_band = &dyn_[oy0 * g.wo..];
                        wdx.times(dcols, nb, nb, dy_band, pos, Tr::No, false, threads, &mut s.pb);
                        col2im(g, dcols, oy0, oy1, dxn);
                    }
                }
            }
        })
    });
    workers.shared_packed = packed;
    workers.shared = shared;
    // the workers' dW^T summed into the first's, then added to dweight transposed
    let mut partials: Vec<&mut [T]> =
        workers.scratch[..workers_used].iter_mut().map(|s| &mut s.c[..kd * cout + cout]).collect();
    sum_into_first(&mut partials);
    let (dwt, db) = partials[0].split_at(kd * cout);
    for (kk, row) in dwt.chunks_exact(cout).enumerate() {
        for (co, &v) in row.iter().enumerate() {
            dweight[co * kd + kk] += v;
        }
    }
    for (d, &p) in dbias.iter_mut().zip(db) {
        *d += p;
    }
}

/// Whether this conv runs by Winograd's F(2x2, 3x3) (`winograd/`): 3x3 same-size, fp32 (or
/// f64) products, enough tiles in the batch, unless `MDC_FP32_CONV=im2col` turned it off.
fn runs_by_winograd<T: Real>(workers: &Workers<T>, g: &ConvGeom, batch: usize) -> bool {
    let min_tiles = match workers.winograd_min_tiles {
        Some(asked) => asked,
        None if winograd::enabled_by_env().unwrap_or(true) => winograd::MIN_TILES,
        None => return false,
    };
    workers.precision == Precision::Fp32 && winograd::applies(g) && winograd::tiles_in(g, batch) >= min_tiles
}

/// dx [N, Cin, H, W] = the gradient of the conv's input from dy [N, Cout, Ho, Wo] alone
/// (overwritten): per image and band of output rows, dcols = W^T dY, scattered back by
/// [`col2im`]. This is also the forward of the transposed convolution whose input is `dy`.
pub fn input_grad<T: Real>(
    workers: &mut Workers<T>,
    g: &ConvGeom,
    batch: usize,
    weight: &[T],
    dy: &[T],
    dx: &mut [T],
) {
    let (kd, pos, cout) = (g.kdim(), g.positions(), g.cout);
    let rows = g.band_rows(kd, workers.column_budget);
    let precision = workers.precision;
    // W^T [K, Cout], converted (bf16) once for all images and bands
    let mut packed = std::mem::take(&mut workers.shared_packed);
    let wt = Lhs::new(precision, kd, cout, weight, kd, Tr::Yes, &mut packed);
    workers.par_images(batch, dx, g.in_len(), |images, dx, s| {
        for (i, n) in images.enumerate() {
            let dyn_ = &dy[n * g.out_len()..(n + 1) * g.out_len()];
            let dxn = &mut dx[i * g.in_len()..(i + 1) * g.in_len()];
            let threads = s.gemm_threads;
            if g.pointwise() {
                wt.times(dxn, pos, pos, dyn_, pos, Tr::No, false, threads, &mut s.pb);
                continue;
            }
            dxn.fill(T::ZERO);
            for oy0 in (0..g.ho).step_by(rows) {
                let oy1 = (oy0 + rows).min(g.ho);
                let nb = (oy1 - oy0) * g.wo;
                let dcols = sized(&mut s.a, kd * nb);
                wt.times(dcols, nb, nb, &dyn_[oy0 * g.wo..], pos, Tr::No, false, threads, &mut s.pb);
                col2im(g, dcols, oy0, oy1, dxn);
            }
        }
    });
    workers.shared_packed = packed;
}

/// dW^T [K, Cout] += cols [K, P] x dY^T [P, Cout] for one band of P positions.
fn add_weight_grad<T: Real>(
    precision: Precision,
    bufs: (&mut Vec<u32>, &mut Vec<u32>),
    dwt: &mut [T],
    cout: usize,
    cols: &[T],
    dyt: &[T],
    threads: usize,
) {
    let p = dyt.len() / cout;
    let kd = cols.len() / p;
    matmul_at(precision, bufs, dwt, cout, kd, cout, p, (cols, p, Tr::No), (dyt, cout, Tr::No), true, threads);
}

/// dst [cols, rows] = src [rows, cols]^T, in tiles so both sides stay in cache.
pub fn transpose<T: Real>(src: &[T], rows: usize, cols: usize, dst: &mut [T]) {
    const TILE: usize = 16;
    for r0 in (0..rows).step_by(TILE) {
        for c0 in (0..cols).step_by(TILE) {
            for r in r0..(r0 + TILE).min(rows) {
                for c in c0..(c0 + TILE).min(cols) {
                    dst[c * rows + r] = src[r * cols + c];
                }
            }
        }
    }
}
