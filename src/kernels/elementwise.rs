//! Add, the per-channel broadcast add and scale of the time embedding, and channel concatenation.
//! Memory-bound, but split across threads anyway: run serially they would leave the other
//! core idle between the convolutions.

use rayon::prelude::*;

use crate::kernels::real::Real;

/// Elements per parallel task.
const CHUNK: usize = 1 << 14;

pub fn add<T: Real>(a: &[T], b: &[T], y: &mut [T]) {
    y.par_chunks_mut(CHUNK).zip(a.par_chunks(CHUNK)).zip(b.par_chunks(CHUNK)).for_each(|((y, a), b)| {
        super::with_avx2(|| {
            for ((o, &u), &v) in y.iter_mut().zip(a).zip(b) {
                *o = u + v;
            }
        })
    });
}

/// dst = src, split across threads like the rest (a ResBlock's residual add hands dy to both
/// its inputs): one core alone does not reach a many-core machine's memory bandwidth.
pub fn copy<T: Real>(src: &[T], dst: &mut [T]) {
    dst.par_chunks_mut(CHUNK).zip(src.par_chunks(CHUNK)).for_each(|(d, s)| d.copy_from_slice(s));
}

/// dst += src.
pub fn add_into<T: Real>(dst: &mut [T], src: &[T]) {
    dst.par_chunks_mut(CHUNK).zip(src.par_chunks(CHUNK)).for_each(|(d, s)| {
        super::with_avx2(|| {
            for (d, &s) in d.iter_mut().zip(s) {
                *d += s;
            }
        })
    });
}

/// y [N, C, HW] = x + bias [N, C] broadcast over HW.
pub fn add_channel_bias<T: Real>(hw: usize, x: &[T], bias: &[T], y: &mut [T]) {
    let min_len = (CHUNK / hw).max(1);
    y.par_chunks_mut(hw).zip(x.par_chunks(hw)).zip(bias.par_iter()).with_min_len(min_len).for_each(
        |((yc, xc), &b)| {
            for (o, &v) in yc.iter_mut().zip(xc) {
                *o = v + b;
            }
        },
    );
}

/// dbias [N, C] = sum over HW of dy.
pub fn add_channel_bias_backward<T: Real>(hw: usize, dy: &[T], dbias: &mut [T]) {
    let min_len = (CHUNK / hw).max(1);
    dbias
        .par_iter_mut()
        .zip(dy.par_chunks(hw))
        .with_min_len(min_len)
        .for_each(|(d, row)| *d = super::sum_map(row, |v| v));
}

/// y [N, C, HW] = x * (1 + scale [N, C]) broadcast over HW.
pub fn scale_channels<T: Real>(hw: usize, x: &[T], scale: &[T], y: &mut [T]) {
    let min_len = (CHUNK / hw).max(1);
    y.par_chunks_mut(hw).zip(x.par_chunks(hw)).zip(scale.par_iter()).with_min_len(min_len).for_each(
        |((yc, xc), &s)| {
            let f = T::ONE + s;
            for (o, &v) in yc.iter_mut().zip(xc) {
                *o = v * f;
            }
        },
    );
}

/// The backward of [`scale_channels`]: dx = dy (1 + scale), dscale [N, C] = sum over HW of dy x.
pub fn scale_channels_backward<T: Real>(
    hw: usize,
    x: &[T],
    scale: &[T],
    dy: &[T],
    dx: &mut [T],
    dscale: &mut [T],
) {
    let min_len = (CHUNK / hw).max(1);
    dx.par_chunks_mut(hw)
        .zip(dscale.par_iter_mut())
        .zip(dy.par_chunks(hw).zip(x.par_chunks(hw)).zip(scale.par_iter()))
        .with_min_len(min_len)
        .for_each(|((dxc, ds), ((dyc, xc), &s))| {
            let f = T::ONE + s;
            let mut acc = T::ZERO;
            for ((d, &g), &v) in dxc.iter_mut().zip(dyc).zip(xc) {
                *d = g * f;
                acc += g * v;
            }
            *ds = acc;
        });
}

/// Copies each input's per-image block (`sizes[i]` elements) one after another into each image of y.
pub fn concat<T: Real>(inputs: &[&[T]], sizes: &[usize], y: &mut [T]) {
    let total: usize = sizes.iter().sum();
    y.par_chunks_mut(total).enumerate().for_each(|(n, yn)| {
        let mut off = 0;
        for (x, &len) in inputs.iter().zip(sizes) {
            yn[off..off + len].copy_from_slice(&x[n * len..(n + 1) * len]);
            off += len;
        }
    });
}

/// The part of dy [N, total] that belongs to the input at `offset` with `len` elements per image.
pub fn concat_backward<T: Real>(total: usize, offset: usize, len: usize, dy: &[T], dx: &mut [T]) {
    dx.par_chunks_mut(len)
        .zip(dy.par_chunks(total))
        .for_each(|(d, g)| d.copy_from_slice(&g[offset..offset + len]));
}
