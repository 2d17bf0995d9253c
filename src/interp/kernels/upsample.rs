//! Nearest-neighbour upsampling by an integer factor s: y[c, i, j] = x[c, i / s, j / s].

use crate::interp::real::Real;

/// `planes` = N * C planes of h x w each.
pub fn forward<T: Real>(planes: usize, h: usize, w: usize, s: usize, x: &[T], y: &mut [T]) {
    let (ws, hws) = (w * s, h * s * w * s);
    for p in 0..planes {
        let xp = &x[p * h * w..(p + 1) * h * w];
        let yp = &mut y[p * hws..(p + 1) * hws];
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
    }
}

/// dx[c, i, j] = sum of dy over the s x s block it was copied to.
pub fn backward<T: Real>(planes: usize, h: usize, w: usize, s: usize, dy: &[T], dx: &mut [T]) {
    let (ws, hws) = (w * s, h * s * w * s);
    for p in 0..planes {
        let dyp = &dy[p * hws..(p + 1) * hws];
        let dxp = &mut dx[p * h * w..(p + 1) * h * w];
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
    }
}
