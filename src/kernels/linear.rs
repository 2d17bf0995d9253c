//! y [N, out] = x [N, in] W^T + b, one GEMM over the whole batch (in the workers' precision).

use crate::kernels::gemm::{matmul_at, Tr};
use crate::kernels::real::Real;
use crate::kernels::workspace::Workers;

#[allow(clippy::too_many_arguments)]
pub fn forward<T: Real>(
    workers: &mut Workers<T>,
    batch: usize,
    fin: usize,
    fout: usize,
    x: &[T],
    w: &[T],
    b: &[T],
    y: &mut [T],
) {
    for row in y.chunks_exact_mut(fout) {
        row.copy_from_slice(b);
    }
    let (p, s) = (workers.precision, &mut workers.scratch[0]);
    matmul_at(
        p,
        (&mut s.pa, &mut s.pb),
        y,
        fout,
        batch,
        fout,
        fin,
        (x, fin, Tr::No),
        (w, fin, Tr::Yes),
        true,
        1,
    );
}

/// Accumulates dW += dY^T X and db += colsum(dY); writes dx = dY W when given.
#[allow(clippy::too_many_arguments)]
pub fn backward<T: Real>(
    workers: &mut Workers<T>,
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
    let (p, s) = (workers.precision, &mut workers.scratch[0]);
    let bufs = (&mut s.pa, &mut s.pb);
    matmul_at(p, bufs, dw, fin, fout, fin, batch, (dy, fout, Tr::Yes), (x, fin, Tr::No), true, 1);
    for row in dy.chunks_exact(fout) {
        for (d, &g) in db.iter_mut().zip(row) {
            *d += g;
        }
    }
    if let Some(dx) = dx {
        let bufs = (&mut s.pa, &mut s.pb);
        matmul_at(p, bufs, dx, fin, batch, fin, fout, (dy, fout, Tr::No), (w, fin, Tr::No), false, 1);
    }
}
