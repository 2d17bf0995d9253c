//! 2-D convolution as im2col + GEMM, per image, images split across threads.
//! Forward: Y[n] = W [Cout, K] x cols(X[n]) [K, P] + b, with K = Cin*k*k and P = Ho*Wo.
//! Backward: dW^T += cols x dY[n]^T, db += rowsum(dY[n]), dX[n] = col2im(W^T x dY[n]).
//! A 1x1 stride-1 unpadded conv reads X[n] as its own columns (no im2col).

use crate::interp::gemm::{matmul, Tr};
use crate::interp::real::Real;
use crate::interp::workspace::{sized, Workers};

/// Sizes of one convolution on one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeom {
    pub cin: usize,
    pub cout: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
    pub h: usize,
    pub w: usize,
    pub ho: usize,
    pub wo: usize,
}

impl ConvGeom {
    /// Rows of the column matrix (= columns of the weight matrix).
    pub fn kdim(&self) -> usize {
        self.cin * self.k * self.k
    }
    /// Output positions per image.
    pub fn positions(&self) -> usize {
        self.ho * self.wo
    }
    fn pointwise(&self) -> bool {
        self.k == 1 && self.stride == 1 && self.pad == 0
    }
    fn in_len(&self) -> usize {
        self.cin * self.h * self.w
    }
    fn out_len(&self) -> usize {
        self.cout * self.ho * self.wo
    }
    /// Output columns `ox` whose input column `ox*stride + kx - pad` lies inside the image.
    fn valid_cols(&self, kx: usize) -> (usize, usize) {
        let lo = if self.pad > kx { (self.pad - kx).div_ceil(self.stride) } else { 0 };
        let hi = if self.w + self.pad > kx {
            ((self.w - 1 + self.pad - kx) / self.stride + 1).min(self.wo)
        } else {
            0
        };
        (lo.min(hi), hi)
    }
}

/// cols[(ci*k + ky)*k + kx, oy*Wo + ox] = x[ci, oy*s + ky - p, ox*s + kx - p] (0 outside).
pub fn im2col<T: Real>(g: &ConvGeom, x: &[T], cols: &mut [T]) {
    if g.stride == 1 && g.wo == g.w && g.ho == g.h {
        return im2col_same(g, x, cols);
    }
    let (k, s, p, hw, pos) = (g.k, g.stride, g.pad, g.h * g.w, g.positions());
    for ci in 0..g.cin {
        let plane = &x[ci * hw..(ci + 1) * hw];
        for ky in 0..k {
            for kx in 0..k {
                let row = (ci * k + ky) * k + kx;
                let dst = &mut cols[row * pos..(row + 1) * pos];
                let (lo, hi) = g.valid_cols(kx);
                for oy in 0..g.ho {
                    let d = &mut dst[oy * g.wo..(oy + 1) * g.wo];
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
        }
    }
}

/// [`im2col`] for stride 1 and an output the size of the input: each row of cols is the image
/// plane shifted by (ky - p, kx - p), so it is one long copy, then the columns that wrapped
/// around a row edge are zeroed (short row-by-row copies cost more in call overhead than data).
fn im2col_same<T: Real>(g: &ConvGeom, x: &[T], cols: &mut [T]) {
    let (k, p, w, hw) = (g.k, g.pad as isize, g.w, g.h * g.w);
    for ci in 0..g.cin {
        let plane = &x[ci * hw..(ci + 1) * hw];
        for ky in 0..k {
            for kx in 0..k {
                let row = (ci * k + ky) * k + kx;
                let dst = &mut cols[row * hw..(row + 1) * hw];
                // dst[i] = plane[i + shift] where the source index is inside the plane
                let shift = (ky as isize - p) * w as isize + (kx as isize - p);
                let lo = (-shift).clamp(0, hw as isize) as usize;
                let hi = (hw as isize - shift).clamp(0, hw as isize) as usize;
                dst[..lo].fill(T::ZERO);
                dst[hi.max(lo)..].fill(T::ZERO);
                if lo < hi {
                    let src_lo = (lo as isize + shift) as usize;
                    dst[lo..hi].copy_from_slice(&plane[src_lo..src_lo + (hi - lo)]);
                }
                // columns whose source wrapped to the neighbouring row
                let dx = kx as isize - p;
                let (c0, c1) = if dx > 0 { (w - dx as usize, w) } else { (0, (-dx) as usize) };
                if c0 < c1 {
                    for r in dst.chunks_exact_mut(w) {
                        r[c0..c1].fill(T::ZERO);
                    }
                }
            }
        }
    }
}

/// The adjoint of [`im2col`]: dx = sum of every column entry back onto the pixel it came from.
/// Destroys `cols` (the same-size fast path zeroes the entries that fall outside the image).
pub fn col2im<T: Real>(g: &ConvGeom, cols: &mut [T], dx: &mut [T]) {
    if g.stride == 1 && g.wo == g.w && g.ho == g.h {
        return col2im_same(g, cols, dx);
    }
    let (k, s, p, hw, pos) = (g.k, g.stride, g.pad, g.h * g.w, g.positions());
    dx[..g.in_len()].fill(T::ZERO);
    for ci in 0..g.cin {
        let plane = &mut dx[ci * hw..(ci + 1) * hw];
        for ky in 0..k {
            for kx in 0..k {
                let row = (ci * k + ky) * k + kx;
                let src = &cols[row * pos..(row + 1) * pos];
                let (lo, hi) = g.valid_cols(kx);
                for oy in 0..g.ho {
                    let iy = (oy * s + ky).wrapping_sub(p);
                    if iy >= g.h || lo >= hi {
                        continue;
                    }
                    let srow = &src[oy * g.wo..(oy + 1) * g.wo];
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

/// [`col2im`] for stride 1 and an output the size of the input: each row of cols is added onto
/// the plane shifted by (ky - p, kx - p) as one long add, after zeroing the entries whose pixel
/// lies off the left or right edge (they would otherwise wrap onto the neighbouring row).
fn col2im_same<T: Real>(g: &ConvGeom, cols: &mut [T], dx: &mut [T]) {
    let (k, p, w, hw) = (g.k, g.pad as isize, g.w, g.h * g.w);
    dx[..g.in_len()].fill(T::ZERO);
    for ci in 0..g.cin {
        let plane = &mut dx[ci * hw..(ci + 1) * hw];
        for ky in 0..k {
            for kx in 0..k {
                let row = (ci * k + ky) * k + kx;
                let src = &mut cols[row * hw..(row + 1) * hw];
                let dxs = kx as isize - p;
                let (c0, c1) = if dxs > 0 { (w - dxs as usize, w) } else { (0, (-dxs) as usize) };
                if c0 < c1 {
                    for r in src.chunks_exact_mut(w) {
                        r[c0..c1].fill(T::ZERO);
                    }
                }
                let shift = (ky as isize - p) * w as isize + dxs;
                let lo = (-shift).clamp(0, hw as isize) as usize;
                let hi = (hw as isize - shift).clamp(0, hw as isize) as usize;
                if lo < hi {
                    let d_lo = (lo as isize + shift) as usize;
                    for (d, &v) in plane[d_lo..d_lo + (hi - lo)].iter_mut().zip(&src[lo..hi]) {
                        *d += v;
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
    let (kd, pos) = (g.kdim(), g.positions());
    workers.par_images(batch, y, g.out_len(), |images, y, s| {
        for (i, n) in images.enumerate() {
            let xn = &x[n * g.in_len()..(n + 1) * g.in_len()];
            let yn = &mut y[i * g.out_len()..(i + 1) * g.out_len()];
            for (row, &b) in yn.chunks_exact_mut(pos).zip(bias) {
                row.fill(b);
            }
            let cols: &[T] = if g.pointwise() {
                xn
            } else {
                let c = sized(&mut s.a, kd * pos);
                im2col(g, xn, c);
                c
            };
            matmul(yn, g.cout, pos, kd, weight, Tr::No, cols, Tr::No, true, s.gemm_threads);
        }
    });
}

/// Accumulates dweight and dbias; writes dx when asked (the image input needs none).
/// Per image: dW^T += cols x dY^T (K x P times P x Cout; both operands row-major, the shape the
/// `gemm` crate runs fastest, where dY cols^T with a transposed operand runs ~4x slower), then
/// dcols = W^T dY and dx = col2im(dcols).
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
    let (kd, pos, cout) = (g.kdim(), g.positions(), g.cout);
    let want_dx = dx.is_some();
    let (dx, per_image): (&mut [T], usize) = match dx {
        Some(d) => (d, g.in_len()),
        None => (&mut [], 0),
    };
    // When the conv keeps the size and does not widen the channels, dx is itself a convolution
    // of dy with the flipped, channel-transposed kernel: its columns (Cout*k*k rows) are no larger
    // than dcols (Cin*k*k rows), its GEMM is compute-bound (depth Cout*k*k, not Cout) and no
    // scatter-add (col2im) is needed.
    let flipped = want_dx && !g.pointwise() && g.stride == 1 && g.ho == g.h && g.wo == g.w && cout <= g.cin;
    let mut shared = std::mem::take(&mut workers.shared);
    let wflip: &[T] = if flipped {
        let w = sized(&mut shared, g.cin * kd);
        flip_kernel(g, weight, w);
        w
    } else {
        &[]
    };
    let gt = ConvGeom { cin: cout, cout: g.cin, pad: g.k - 1 - g.pad, ..*g };
    let workers_used = workers.par_images(batch, dx, per_image, |images, dx, s| {
        super::with_avx2(|| {
            let partial = sized(&mut s.c, kd * cout + cout);
            partial.fill(T::ZERO);
            let (dwt, db) = partial.split_at_mut(kd * cout);
            for (i, n) in images.enumerate() {
                let xn = &x[n * g.in_len()..(n + 1) * g.in_len()];
                let dyn_ = &dy[n * g.out_len()..(n + 1) * g.out_len()];
                for (acc, row) in db.iter_mut().zip(dyn_.chunks_exact(pos)) {
                    *acc += super::sum_map(row, |v| v);
                }
                let dyt = sized(&mut s.b, pos * cout);
                transpose(dyn_, cout, pos, dyt);
                let cols: &[T] = if g.pointwise() {
                    xn
                } else {
                    let c = sized(&mut s.a, kd * pos);
                    im2col(g, xn, c);
                    c
                };
                matmul(dwt, kd, cout, pos, cols, Tr::No, dyt, Tr::No, true, s.gemm_threads);
                if want_dx {
                    let dxn = &mut dx[i * g.in_len()..(i + 1) * g.in_len()];
                    if g.pointwise() {
                        matmul(dxn, kd, pos, cout, weight, Tr::Yes, dyn_, Tr::No, false, s.gemm_threads);
                    } else if flipped {
                        let cols = sized(&mut s.a, gt.kdim() * pos);
                        im2col(&gt, dyn_, cols);
                        matmul(
                            dxn,
                            g.cin,
                            pos,
                            gt.kdim(),
                            wflip,
                            Tr::No,
                            cols,
                            Tr::No,
                            false,
                            s.gemm_threads,
                        );
                    } else {
                        let dcols = sized(&mut s.a, kd * pos);
                        matmul(dcols, kd, pos, cout, weight, Tr::Yes, dyn_, Tr::No, false, s.gemm_threads);
                        col2im(g, dcols, dxn);
                    }
                }
            }
        })
    });
    workers.shared = shared;
    for s in &workers.scratch[..workers_used] {
        let (dwt, db) = s.c[..kd * cout + cout].split_at(kd * cout);
        for (kk, row) in dwt.chunks_exact(cout).enumerate() {
            for (co, &v) in row.iter().enumerate() {
                dweight[co * kd + kk] += v;
            }
        }
        for (d, &p) in dbias.iter_mut().zip(db) {
            *d += p;
        }
    }
}

/// wflip[ci, (co*k + ky)*k + kx] = w[co, ci, k-1-ky, k-1-kx]: the kernel of the convolution
/// that maps dy back to dx for a stride-1 same-size conv.
fn flip_kernel<T: Real>(g: &ConvGeom, w: &[T], wflip: &mut [T]) {
    let (k, cin, cout) = (g.k, g.cin, g.cout);
    for co in 0..cout {
        for ci in 0..cin {
            for ky in 0..k {
                for kx in 0..k {
                    wflip[ci * cout * k * k + (co * k + ky) * k + kx] =
                        w[((co * cin + ci) * k + (k - 1 - ky)) * k + (k - 1 - kx)];
                }
            }
        }
    }
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
