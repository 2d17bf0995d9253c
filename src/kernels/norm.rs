//! GroupNorm over (C/groups, H, W) of each image, with a per-channel affine, optionally fused
//! with the SiLU that follows it (one pass instead of two, and the normalised values need not be
//! kept for the SiLU's backward: they are recomputed from x and the saved statistics).
//! A per-(image, channel) bias added after it (a ResBlock's time bias) can join the same pass.
//! Forward saves mean and 1/std per (image, group) for the backward.

use super::activation::{silu_affine, silu_grad_affine};
use super::{sum_map, sum_zip};
use crate::kernels::real::Real;
use crate::kernels::workspace::{sized, Workers};

#[derive(Debug, Clone, Copy)]
pub struct GroupNormGeom {
    pub channels: usize,
    pub hw: usize,
    pub groups: usize,
    pub eps: f64,
}

impl GroupNormGeom {
    fn per_image(&self) -> usize {
        self.channels * self.hw
    }
    fn group_channels(&self) -> usize {
        self.channels / self.groups
    }
}

/// y = (x - mean) / sqrt(var + eps) * gamma + beta, then y * sigmoid(y) when `silu`, then
/// `+ time_bias[n, c]` when given ([N, C]); `stats` [N, groups, 2] gets (mean, rstd).
#[allow(clippy::too_many_arguments)]
pub fn forward<T: Real>(
    workers: &mut Workers<T>,
    g: &GroupNormGeom,
    batch: usize,
    x: &[T],
    gamma: &[T],
    beta: &[T],
    y: &mut [T],
    stats: &mut [T],
    silu: bool,
    time_bias: Option<&[T]>,
) {
    if let Some(tb) = time_bias {
        assert_eq!(tb.len(), batch * g.channels, "a time bias per image and channel");
    }
    workers.par_images2(batch, y, g.per_image(), stats, 2 * g.groups, |images, y, st, _| {
        let gb = (gamma, beta);
        super::call_with_avx2!(forward_images::<T>(
            g: &GroupNormGeom,
            images: std::ops::Range<usize>,
            x: &[T],
            gb: (&[T], &[T]),
            y: &mut [T],
            st: &mut [T],
            silu: bool,
            time_bias: Option<&[T]>,
        ))
    });
}

/// [`forward`] on the images `images` of `x` (outputs and statistics from 0 in `y` and `st`).
/// Always inlined, so `call_with_avx2!` compiles it for 8 lanes and FMA.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn forward_images<T: Real>(
    g: &GroupNormGeom,
    images: std::ops::Range<usize>,
    x: &[T],
    (gamma, beta): (&[T], &[T]),
    y: &mut [T],
    st: &mut [T],
    silu: bool,
    time_bias: Option<&[T]>,
) {
    let (cg, hw) = (g.group_channels(), g.hw);
    let len = T::from_f64((cg * hw) as f64);
    let eps = T::from_f64(g.eps);
    for (i, n) in images.enumerate() {
        let xn = &x[n * g.per_image()..(n + 1) * g.per_image()];
        let yn = &mut y[i * g.per_image()..(i + 1) * g.per_image()];
        for grp in 0..g.groups {
            let range = grp * cg * hw..(grp + 1) * cg * hw;
            let xs = &xn[range.clone()];
            let mean = sum_map(xs, |v| v) / len;
            let var = sum_map(xs, |v| (v - mean) * (v - mean)) / len;
            let rstd = T::ONE / (var + eps).sqrt();
            st[(i * g.groups + grp) * 2] = mean;
            st[(i * g.groups + grp) * 2 + 1] = rstd;
            for (j, (yc, xc)) in yn[range].chunks_exact_mut(hw).zip(xs.chunks_exact(hw)).enumerate() {
                let c = grp * cg + j;
                let a = rstd * gamma[c];
                let b = beta[c] - mean * a;
                let then_add = time_bias.map(|tb| tb[n * g.channels + c]);
                match (silu, then_add) {
                    (true, _) => silu_affine(yc, xc, a, b, then_add),
                    (false, None) => yc.iter_mut().zip(xc).for_each(|(o, &v)| *o = v * a + b),
                    (false, Some(t)) => yc.iter_mut().zip(xc).for_each(|(o, &v)| *o = (v * a + b) + t),
                }
            }
        }
    }
}

/// Writes dx and accumulates dgamma, dbeta. `dy` is the gradient after the whole pass (the fused
/// SiLU and time bias included); `time_bias_grad` [N, C], when given, gets its sum over H, W
/// (the bias's gradient).
#[allow(clippy::too_many_arguments)]
pub fn backward<T: Real>(
    workers: &mut Workers<T>,
    g: &GroupNormGeom,
    batch: usize,
    x: &[T],
    gamma: &[T],
    beta: &[T],
    stats: &[T],
    dy: &[T],
    dx: &mut [T],
    dgamma: &mut [T],
    dbeta: &mut [T],
    silu: bool,
    time_bias_grad: Option<&mut [T]>,
) {
    let (c, per) = (g.channels, g.per_image());
    let (tb_grad, tb_per_image): (&mut [T], usize) = match time_bias_grad {
        Some(d) => (d, c),
        None => (&mut [], 0),
    };
    let used = workers.par_images2(batch, dx, per, tb_grad, tb_per_image, |images, dx, tb_grad, s| {
        let (gb, partial) = ((gamma, beta), &mut s.c);
        super::call_with_avx2!(backward_images::<T>(
            g: &GroupNormGeom,
            images: std::ops::Range<usize>,
            x: &[T],
            gb: (&[T], &[T]),
            stats: &[T],
            dy: &[T],
            dx: &mut [T],
            tb_grad: &mut [T],
            partial: &mut Vec<T>,
            silu: bool,
        ))
    });
    for s in &workers.scratch[..used] {
        for (d, &p) in dgamma.iter_mut().zip(&s.c[..c]) {
            *d += p;
        }
        for (d, &p) in dbeta.iter_mut().zip(&s.c[c..2 * c]) {
            *d += p;
        }
    }
}

/// [`backward`] on the images `images`: dx (and the time bias's gradient when `tb_grad` is not
/// empty) from 0, the partial dgamma and dbeta in `partial` (2C).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn backward_images<T: Real>(
    g: &GroupNormGeom,
    images: std::ops::Range<usize>,
    x: &[T],
    (gamma, beta): (&[T], &[T]),
    stats: &[T],
    dy: &[T],
    dx: &mut [T],
    tb_grad: &mut [T],
    partial: &mut Vec<T>,
    silu: bool,
) {
    let (c, cg, hw) = (g.channels, g.group_channels(), g.hw);
    let len = T::from_f64((cg * hw) as f64);
    let per = g.per_image();
    let partial = sized(partial, 2 * c);
    partial.fill(T::ZERO);
    let (pg, pb) = partial.split_at_mut(c);
    for (i, n) in images.enumerate() {
        let xn = &x[n * per..(n + 1) * per];
        let dyn_ = &dy[n * per..(n + 1) * per];
        let dxn = &mut dx[i * per..(i + 1) * per];
        for grp in 0..g.groups {
            let mean = stats[(n * g.groups + grp) * 2];
            let rstd = stats[(n * g.groups + grp) * 2 + 1];
            // sums over the group of dxhat = dy * gamma and of dxhat * xhat; with a fused
            // SiLU, dx first holds the gradient before it (dy is only read: writing it back
            // would cost a pass to memory), channel by channel while the channel is in cache
            let (mut s_dxhat, mut s_dxhat_xhat) = (T::ZERO, T::ZERO);
            for ch in grp * cg..(grp + 1) * cg {
                let r = ch * hw..(ch + 1) * hw;
                let xc = &xn[r.clone()];
                if !tb_grad.is_empty() {
                    tb_grad[i * c + ch] = sum_map(&dyn_[r.clone()], |v| v);
                }
                let dc: &[T] = if silu {
                    let a = rstd * gamma[ch];
                    let b = beta[ch] - mean * a;
                    silu_grad_affine(&mut dxn[r.clone()], &dyn_[r.clone()], xc, a, b);
                    &dxn[r]
                } else {
                    &dyn_[r]
                };
                let sd = sum_map(dc, |v| v);
                let sdx = sum_zip(dc, xc, |d, v| d * (v - mean)) * rstd;
                pg[ch] += sdx;
                pb[ch] += sd;
                s_dxhat += sd * gamma[ch];
                s_dxhat_xhat += sdx * gamma[ch];
            }
            let m1 = s_dxhat / len;
            let m2 = s_dxhat_xhat / len;
            for j in 0..cg {
                let ch = grp * cg + j;
                let r = ch * hw..(ch + 1) * hw;
                let a = rstd * gamma[ch];
                let (xc, dxc) = (&xn[r.clone()], &mut dxn[r.clone()]);
                // dx from the gradient before the SiLU, which is dx itself when fused
                let dxhat = |o: &mut T, d: T, v: T| {
                    let xhat = (v - mean) * rstd;
                    *o = a * d - rstd * (m1 + xhat * m2);
                };
                if silu {
                    dxc.iter_mut().zip(xc).for_each(|(o, &v)| dxhat(o, *o, v));
                } else {
                    dxc.iter_mut().zip(&dyn_[r]).zip(xc).for_each(|((o, &d), &v)| dxhat(o, d, v));
                }
            }
        }
    }
}
