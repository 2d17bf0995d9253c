//! GroupNorm over (C/groups, H, W) of each image, with a per-channel affine, optionally fused
//! with the SiLU that follows it (one pass instead of two, and the normalised values need not be
//! kept for the SiLU's backward: they are recomputed from x and the saved statistics).
//! A per-(image, channel) bias added after it (a ResBlock's time bias) can join the same pass.
//! Forward saves mean and 1/std per (image, group) for the backward.

use rayon::prelude::*;

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

/// Parallel tasks per thread: enough for an even finish, few enough that scheduling them costs
/// nothing (one task per 16 Ki elements made the backward 10-20 % slower on a 2-core Zen 3).
const TASKS_PER_THREAD: usize = 4;

/// Elements per task at least, whatever the thread count.
const MIN_TASK_ELEMENTS: usize = 1 << 12;

/// (image, group) units per parallel task: each a contiguous `cg * hw` of x, y, dx. Splitting
/// by units rather than by images keeps every thread busy when the batch is smaller than the
/// thread count (a forward at batch 8 on 16 cores).
fn units_per_task(g: &GroupNormGeom, batch: usize) -> usize {
    let unit = (g.group_channels() * g.hw).max(1);
    let even = (batch * g.groups).div_ceil(TASKS_PER_THREAD * rayon::current_num_threads());
    even.max(MIN_TASK_ELEMENTS.div_ceil(unit)).max(1)
}

/// y = (x - mean) / sqrt(var + eps) * gamma + beta, then y * sigmoid(y) when `silu`, then
/// `+ time_bias[n, c]` when given ([N, C]; only after a SiLU, as a ResBlock adds it); `stats`
/// [N, groups, 2] gets (mean, rstd).
#[allow(clippy::too_many_arguments)]
pub fn forward<T: Real>(
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
        assert!(silu, "a time bias is fused after a SiLU only");
        assert_eq!(tb.len(), batch * g.channels, "a time bias per image and channel");
    }
    let (unit, units) = (g.group_channels() * g.hw, units_per_task(g, batch));
    let y = y[..batch * g.per_image()].par_chunks_mut(units * unit);
    y.zip(stats[..batch * g.groups * 2].par_chunks_mut(units * 2)).enumerate().for_each(|(task, (y, st))| {
        let (gb, first) = ((gamma, beta), task * units);
        super::call_with_avx2!(forward_units::<T>(
            g: &GroupNormGeom,
            first: usize,
            x: &[T],
            gb: (&[T], &[T]),
            y: &mut [T],
            st: &mut [T],
            silu: bool,
            time_bias: Option<&[T]>,
        ))
    });
}

/// [`forward`] on the (image, group) units from `first` on, as many as `y` holds (outputs and
/// statistics from 0 in `y` and `st`). Always inlined, so `call_with_avx2!` compiles it for
/// 8 lanes and FMA.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn forward_units<T: Real>(
    g: &GroupNormGeom,
    first: usize,
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
    for (k, (yu, stu)) in y.chunks_exact_mut(cg * hw).zip(st.chunks_exact_mut(2)).enumerate() {
        let (n, grp) = ((first + k) / g.groups, (first + k) % g.groups);
        let xs = &x[(first + k) * cg * hw..(first + k + 1) * cg * hw];
        let mean = sum_map(xs, |v| v) / len;
        let var = sum_map(xs, |v| (v - mean) * (v - mean)) / len;
        let rstd = T::ONE / (var + eps).sqrt();
        stu[0] = mean;
        stu[1] = rstd;
        for (j, (yc, xc)) in yu.chunks_exact_mut(hw).zip(xs.chunks_exact(hw)).enumerate() {
            let c = grp * cg + j;
            let a = rstd * gamma[c];
            let b = beta[c] - mean * a;
            if silu {
                silu_affine(yc, xc, a, b, time_bias.map(|tb| tb[n * g.channels + c]));
            } else {
                yc.iter_mut().zip(xc).for_each(|(o, &v)| *o = v * a + b);
            }
        }
    }
}

/// Writes dx and accumulates dgamma, dbeta. `dy` is the gradient after the whole pass (the fused
/// SiLU and time bias included); `time_bias_grad` [N, C], when given, gets its sum over H, W
/// (the bias's gradient). dgamma and dbeta add up the images in order, whatever the threads.
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
    let (c, cg) = (g.channels, g.group_channels());
    let (unit, units) = (cg * g.hw, units_per_task(g, batch));
    // per (image, channel): the parts of dgamma and dbeta, and the time bias's gradient (written
    // where asked, else into scratch that `bias_grad` leaves untouched)
    let per_channel = sized(&mut workers.shared, 3 * batch * c);
    let (unused_tb, partial) = per_channel.split_at_mut(batch * c);
    let (pg, pb) = partial.split_at_mut(batch * c);
    let bias_grad = time_bias_grad.is_some();
    let tb_grad = time_bias_grad.unwrap_or(unused_tb);
    let dx = dx[..batch * g.per_image()].par_chunks_mut(units * unit);
    let per_unit = tb_grad
        .par_chunks_mut(units * cg)
        .zip(pg.par_chunks_mut(units * cg))
        .zip(pb.par_chunks_mut(units * cg));
    dx.zip(per_unit).enumerate().for_each(|(task, (dx, ((tb_grad, pg), pb)))| {
        let (gb, first) = ((gamma, beta), task * units);
        super::call_with_avx2!(backward_units::<T>(
            g: &GroupNormGeom,
            first: usize,
            x: &[T],
            gb: (&[T], &[T]),
            stats: &[T],
            dy: &[T],
            dx: &mut [T],
            tb_grad: &mut [T],
            pg: &mut [T],
            pb: &mut [T],
            silu: bool,
            bias_grad: bool,
        ))
    });
    for n in 0..batch {
        for (d, &p) in dgamma.iter_mut().zip(&pg[n * c..(n + 1) * c]) {
            *d += p;
        }
        for (d, &p) in dbeta.iter_mut().zip(&pb[n * c..(n + 1) * c]) {
            *d += p;
        }
    }
}

/// [`backward`] on the (image, group) units from `first` on, as many as `dx` holds: dx, and
/// per channel of each unit the image's parts of dgamma (`pg`) and dbeta (`pb`) and, with
/// `bias_grad`, the time bias's gradient (`tb_grad`).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn backward_units<T: Real>(
    g: &GroupNormGeom,
    first: usize,
    x: &[T],
    (gamma, beta): (&[T], &[T]),
    stats: &[T],
    dy: &[T],
    dx: &mut [T],
    tb_grad: &mut [T],
    pg: &mut [T],
    pb: &mut [T],
    silu: bool,
    bias_grad: bool,
) {
    let (cg, hw) = (g.group_channels(), g.hw);
    let len = T::from_f64((cg * hw) as f64);
    for (k, dxu) in dx.chunks_exact_mut(cg * hw).enumerate() {
        let (u, grp) = (first + k, (first + k) % g.groups);
        let at = u * cg * hw;
        let (xu, dyu) = (&x[at..at + cg * hw], &dy[at..at + cg * hw]);
        let (mean, rstd) = (stats[u * 2], stats[u * 2 + 1]);
        // sums over the group of dxhat = dy * gamma and of dxhat * xhat; with a fused
        // SiLU, dx first holds the gradient before it (dy is only read: writing it back
        // would cost a pass to memory), channel by channel while the channel is in cache
        let (mut s_dxhat, mut s_dxhat_xhat) = (T::ZERO, T::ZERO);
        for j in 0..cg {
            let (ch, r) = (grp * cg + j, j * hw..(j + 1) * hw);
            let xc = &xu[r.clone()];
            if bias_grad {
                tb_grad[k * cg + j] = sum_map(&dyu[r.clone()], |v| v);
            }
            let dc: &[T] = if silu {
                let a = rstd * gamma[ch];
                let b = beta[ch] - mean * a;
                silu_grad_affine(&mut dxu[r.clone()], &dyu[r.clone()], xc, a, b);
                &dxu[r]
            } else {
                &dyu[r]
            };
            let sd = sum_map(dc, |v| v);
            let sdx = sum_zip(dc, xc, |d, v| d * (v - mean)) * rstd;
            pg[k * cg + j] = sdx;
            pb[k * cg + j] = sd;
            s_dxhat += sd * gamma[ch];
            s_dxhat_xhat += sdx * gamma[ch];
        }
        let m1 = s_dxhat / len;
        let m2 = s_dxhat_xhat / len;
        for j in 0..cg {
            let (ch, r) = (grp * cg + j, j * hw..(j + 1) * hw);
            let a = rstd * gamma[ch];
            let (xc, dxc) = (&xu[r.clone()], &mut dxu[r.clone()]);
            // dx from the gradient before the SiLU, which is dx itself when fused
            let dxhat = |o: &mut T, d: T, v: T| {
                let xhat = (v - mean) * rstd;
                *o = a * d - rstd * (m1 + xhat * m2);
            };
            if silu {
                dxc.iter_mut().zip(xc).for_each(|(o, &v)| dxhat(o, *o, v));
            } else {
                dxc.iter_mut().zip(&dyu[r]).zip(xc).for_each(|((o, &d), &v)| dxhat(o, d, v));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Split by (image, group) units across threads, and with a group spread over more units
    /// than fit one task: the forward, dx, dgamma, dbeta and the time bias's gradient are the
    /// same bits on 1 thread and on 5 (dgamma and dbeta add up the images in order either way),
    /// and a single image keeps all 5 busy.
    #[test]
    fn group_norm_is_the_same_bits_on_any_thread_count() {
        // (channels, hw, groups, batch): units of 1, 2 and 3 tasks' worth; one image; odd sizes
        for (channels, hw, groups, batch) in [(8, 9, 4, 3), (4, 5000, 2, 2), (6, 30000, 1, 1), (12, 7, 3, 5)]
        {
            let g = GroupNormGeom { channels, hw, groups, eps: 1e-5 };
            let len = batch * channels * hw;
            let wave = |i: usize, k: usize| ((i * k % 101) as f32 - 50.0) / 30.0;
            let x: Vec<f32> = (0..len).map(|i| wave(i, 7)).collect();
            let dy: Vec<f32> = (0..len).map(|i| wave(i, 13)).collect();
            let gamma: Vec<f32> = (0..channels).map(|c| 1.0 + c as f32 / 10.0).collect();
            let beta: Vec<f32> = (0..channels).map(|c| c as f32 / 20.0 - 0.1).collect();
            let tb: Vec<f32> = (0..batch * channels).map(|i| wave(i, 3)).collect();
            let run = |threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                pool.install(|| {
                    let mut workers = Workers::<f32>::new();
                    let (mut y, mut stats) = (vec![f32::NAN; len], vec![f32::NAN; batch * groups * 2]);
                    forward(&g, batch, &x, &gamma, &beta, &mut y, &mut stats, true, Some(&tb));
                    let mut dx = vec![f32::NAN; len];
                    let (mut dg, mut db, mut dtb) =
                        (vec![0f32; channels], vec![0f32; channels], vec![0f32; tb.len()]);
                    let grads = (&mut dg, &mut db);
                    backward(
                        &mut workers,
                        &g,
                        batch,
                        &x,
                        &gamma,
                        &beta,
                        &stats,
                        &dy,
                        &mut dx,
                        grads.0,
                        grads.1,
                        true,
                        Some(&mut dtb),
                    );
                    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                    [bits(&y), bits(&stats), bits(&dx), bits(&dg), bits(&db), bits(&dtb)]
                })
            };
            let one = run(1);
            assert!(one.iter().flatten().all(|&b| f32::from_bits(b).is_finite()), "every output written");
            assert_eq!(one, run(5), "{channels} channels x {hw}, {groups} groups, batch {batch}");
        }
    }
}
