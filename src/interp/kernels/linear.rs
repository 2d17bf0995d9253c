//! y [N, out] = x [N, in] W^T + b, one GEMM over the whole batch.

use crate::interp::gemm::{matmul, Tr};
use crate::interp::real::Real;

pub fn forward<T: Real>(batch: usize, fin: usize, fout: usize, x: &[T], w: &[T], b: &[T], y: &mut [T]) {
    for row in y.chunks_exact_mut(fout) {
        row.copy_from_slice(b);
    }
    matmul(y, batch, fout, fin, x, Tr::No, w, Tr::Yes, true, 1);
}

/// Accumulates dW += dY^T X and db += colsum(dY); writes dx = dY W when given.
#[allow(clippy::too_many_arguments)]
pub fn backward<T: Real>(
    batch: usize,
    fin: usize,
    fout: usize,
    x: &[T],
    w: &[T],
    dy: &[T],
    dx: Option<&mut [T]>,
    dw: &mut [T],
    db: &mut [T],
) {
    matmul(dw, fout, fin, batch, dy, Tr::Yes, x, Tr::No, true, 1);
    for row in dy.chunks_exact(fout) {
        for (d, &g) in db.iter_mut().zip(row) {
            *d += g;
        }
    }
    if let Some(dx) = dx {
        matmul(dx, batch, fin, fout, dy, Tr::No, w, Tr::No, false, 1);
    }
}
