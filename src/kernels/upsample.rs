//! Nearest-neighbour upsampling by an integer factor s: y[c, i, j] = x[c, i / s, j / s].

use rayon::prelude::*;

use crate::kernels::real::Real;

/// `planes` = N * C planes of h x w each.
pub fn forward<T: Real>(planes: usize, h: usize, w: usize, s: usize, x: &[T], y: &mut [T]) {
    let (ws, hws) = (w * s, h * s * w * s);
    y[..planes * hws].par_chunks_mut(hws).zip(x.par_chunks(h * w)).for_each(|(yp, xp)| {
        for i in 0..h {
            let src = &xp[i * w..(i + 1) * w];
            let first = &mut yp[i * s * ws..(i * s + 1) * ws];
            for (j, &v) in src.iter().enumerate() {
                first[j * s..(j + 1) * s].fill(v);
            }
            for r in 1..s {
                yp.copy_within(i * s * ws..(i * s + 1) * ws, (i * s + r) * ws);
            }
        }
    });
}

/// dx[c, i, j] = sum of dy over the s x s block it was copied to.
pub fn backward<T: Real>(planes: usize, h: usize, w: usize, s: usize, dy: &[T], dx: &mut [T]) {
    let (ws, hws) = (w * s, h * s * w * s);
    dx[..planes * h * w].par_chunks_mut(h * w).zip(dy.par_chunks(hws)).for_each(|(dxp, dyp)| {
        dxp.fill(T::ZERO);
        for i in 0..h {
            let d = &mut dxp[i * w..(i + 1) * w];
            for r in 0..s {
                let row = &dyp[(i * s + r) * ws..(i * s + r + 1) * ws];
                for (j, dv) in d.iter_mut().enumerate() {
                    for &g in &row[j * s..(j + 1) * s] {
                        *dv += g;
                    }
                }
            }
        }
    });
}
