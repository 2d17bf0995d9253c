//! Multi-head self-attention over the H*W positions of each image.
//! Input [N, 3C, P] with q, k, v stacked on channels; head h reads channels h*d..(h+1)*d of each
//! (d = C / heads). Per head, with Q, K, V as [d, P] matrices:
//! S = Q^T K / sqrt(d) [P, P], A = softmax over rows of S, O = V A^T [d, P].
//! The backward recomputes A instead of keeping P*P probabilities per head alive.

use crate::kernels::gemm::{matmul, Tr};
use crate::kernels::real::Real;
use crate::kernels::workspace::{sized, Workers};

#[derive(Debug, Clone, Copy)]
pub struct AttentionGeom {
    pub channels: usize,
    pub heads: usize,
    pub positions: usize,
}

impl AttentionGeom {
    fn head_dim(&self) -> usize {
        self.channels / self.heads
    }
    fn scale<T: Real>(&self) -> T {
        T::from_f64(1.0 / (self.head_dim() as f64).sqrt())
    }
}

/// probs [P, P] = softmax_rows(scale * Q^T K).
fn probabilities<T: Real>(g: &AttentionGeom, q: &[T], k: &[T], probs: &mut [T], threads: usize) {
    let p = g.positions;
    matmul(probs, p, p, g.head_dim(), q, Tr::Yes, k, Tr::No, false, threads);
    let scale = g.scale::<T>();
    for row in probs.chunks_exact_mut(p) {
        let max = row.iter().fold(row[0], |m, &v| m.max(v));
        let mut sum = T::ZERO;
        for v in row.iter_mut() {
            *v = ((*v - max) * scale).exp();
            sum += *v;
        }
        let inv = T::ONE / sum;
        for v in row.iter_mut() {
            *v *= inv;
        }
    }
}

pub fn forward<T: Real>(workers: &mut Workers<T>, g: &AttentionGeom, batch: usize, qkv: &[T], y: &mut [T]) {
    let (c, p, d) = (g.channels, g.positions, g.head_dim());
    workers.par_images(batch, y, c * p, |images, y, s| {
        for (i, n) in images.enumerate() {
            let xn = &qkv[n * 3 * c * p..(n + 1) * 3 * c * p];
            for h in 0..g.heads {
                let q = &xn[h * d * p..(h + 1) * d * p];
                let k = &xn[(c + h * d) * p..(c + (h + 1) * d) * p];
                let v = &xn[(2 * c + h * d) * p..(2 * c + (h + 1) * d) * p];
                let probs = sized(&mut s.a, p * p);
                probabilities(g, q, k, probs, s.gemm_threads);
                let o = &mut y[(i * c + h * d) * p..(i * c + (h + 1) * d) * p];
                matmul(o, d, p, p, v, Tr::No, probs, Tr::Yes, false, s.gemm_threads);
            }
        }
    });
}

/// dqkv from dy: dV = dO A, dS = A * (dA - rowsum(dA * A)) with dA = dO^T V,
/// dQ = scale * K dS^T, dK = scale * Q dS.
pub fn backward<T: Real>(
    workers: &mut Workers<T>,
    g: &AttentionGeom,
    batch: usize,
    qkv: &[T],
    dy: &[T],
    dqkv: &mut [T],
) {
    let (c, p, d) = (g.channels, g.positions, g.head_dim());
    let scale = g.scale::<T>();
    workers.par_images(batch, dqkv, 3 * c * p, |images, dx, s| {
        for (i, n) in images.enumerate() {
            let xn = &qkv[n * 3 * c * p..(n + 1) * 3 * c * p];
            let dxn = &mut dx[i * 3 * c * p..(i + 1) * 3 * c * p];
            for h in 0..g.heads {
                let q = &xn[h * d * p..(h + 1) * d * p];
                let k = &xn[(c + h * d) * p..(c + (h + 1) * d) * p];
                let v = &xn[(2 * c + h * d) * p..(2 * c + (h + 1) * d) * p];
                let dout = &dy[(n * c + h * d) * p..(n * c + (h + 1) * d) * p];
                let probs = sized(&mut s.a, p * p);
                probabilities(g, q, k, probs, s.gemm_threads);
                let dv = &mut dxn[(2 * c + h * d) * p..(2 * c + (h + 1) * d) * p];
                matmul(dv, d, p, p, dout, Tr::No, probs, Tr::No, false, s.gemm_threads);
                let ds = sized(&mut s.b, p * p);
                matmul(ds, p, p, d, dout, Tr::Yes, v, Tr::No, false, s.gemm_threads);
                for (drow, arow) in ds.chunks_exact_mut(p).zip(probs.chunks_exact(p)) {
                    let dot = super::sum_zip(drow, arow, |a, b| a * b);
                    for (dv, &a) in drow.iter_mut().zip(arow) {
                        *dv = a * (*dv - dot) * scale;
                    }
                }
                let (dq_dk, _) = dxn.split_at_mut(2 * c * p);
                let (dq_all, dk_all) = dq_dk.split_at_mut(c * p);
                let dq = &mut dq_all[h * d * p..(h + 1) * d * p];
                matmul(dq, d, p, p, k, Tr::No, ds, Tr::Yes, false, s.gemm_threads);
                let dk = &mut dk_all[h * d * p..(h + 1) * d * p];
                matmul(dk, d, p, p, q, Tr::No, ds, Tr::No, false, s.gemm_threads);
            }
        }
    });
}
