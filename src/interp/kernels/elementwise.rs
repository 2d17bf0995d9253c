//! Add, the per-channel broadcast add of the time embedding, and channel concatenation.

use crate::interp::real::Real;

pub fn add<T: Real>(a: &[T], b: &[T], y: &mut [T]) {
    super::with_avx2(|| {
        for ((o, &u), &v) in y.iter_mut().zip(a).zip(b) {
            *o = u + v;
        }
    })
}

/// dst += src.
pub fn add_into<T: Real>(dst: &mut [T], src: &[T]) {
    super::with_avx2(|| {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d += s;
        }
    })
}

/// y [N, C, HW] = x + bias [N, C] broadcast over HW.
pub fn add_channel_bias<T: Real>(hw: usize, x: &[T], bias: &[T], y: &mut [T]) {
    for ((yc, xc), &b) in y.chunks_exact_mut(hw).zip(x.chunks_exact(hw)).zip(bias) {
        for (o, &v) in yc.iter_mut().zip(xc) {
            *o = v + b;
        }
    }
}

/// dbias [N, C] = sum over HW of dy.
pub fn add_channel_bias_backward<T: Real>(hw: usize, dy: &[T], dbias: &mut [T]) {
    for (d, row) in dbias.iter_mut().zip(dy.chunks_exact(hw)) {
        *d = super::sum_map(row, |v| v);
    }
}

/// Copies each input's per-image block (`sizes[i]` elements) one after another into each image of y.
pub fn concat<T: Real>(batch: usize, inputs: &[&[T]], sizes: &[usize], y: &mut [T]) {
    let total: usize = sizes.iter().sum();
    for n in 0..batch {
        let mut off = n * total;
        for (x, &len) in inputs.iter().zip(sizes) {
            y[off..off + len].copy_from_slice(&x[n * len..(n + 1) * len]);
            off += len;
        }
    }
}

/// The part of dy [N, total] that belongs to the input at `offset` with `len` elements per image.
pub fn concat_backward<T: Real>(
    batch: usize,
    total: usize,
    offset: usize,
    len: usize,
    dy: &[T],
    dx: &mut [T],
) {
    for n in 0..batch {
        dx[n * len..(n + 1) * len].copy_from_slice(&dy[n * total + offset..n * total + offset + len]);
    }
}
