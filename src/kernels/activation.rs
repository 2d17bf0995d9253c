//! SiLU, y = x * sigmoid(x); dy/dx = s * (1 + x * (1 - s)).
//! The loops run through [`super::with_avx2`] (the exp is a branch-free polynomial so it
//! vectorises).

use rayon::prelude::*;

use crate::kernels::real::Real;

/// Elements per parallel task: large enough that scheduling costs nothing next to the work.
const CHUNK: usize = 1 << 15;

#[inline(always)]
pub(crate) fn sigmoid<T: Real>(x: T) -> T {
    T::ONE / (T::ONE + (-x).exp_fast())
}

/// d silu(z) / dz.
#[inline(always)]
pub(crate) fn silu_grad<T: Real>(z: T) -> T {
    let s = sigmoid(z);
    s * (T::ONE + z * (T::ONE - s))
}

#[inline(always)]
fn forward_chunk<T: Real>(x: &[T], y: &mut [T]) {
    for (o, &v) in y.iter_mut().zip(x) {
        *o = v * sigmoid(v);
    }
}

#[inline(always)]
fn backward_chunk<T: Real>(x: &[T], d: &mut [T]) {
    for (g, &v) in d.iter_mut().zip(x) {
        *g *= silu_grad(v);
    }
}

pub fn silu_forward<T: Real>(x: &[T], y: &mut [T]) {
    y.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .for_each(|(y, x)| super::with_avx2(|| forward_chunk(x, y)));
}

/// Overwrites `dy` with dx (the incoming gradient is not needed afterwards).
pub fn silu_backward_in_place<T: Real>(x: &[T], dy: &mut [T]) {
    dy.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .for_each(|(d, x)| super::with_avx2(|| backward_chunk(x, d)));
}
