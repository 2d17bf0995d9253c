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

/// Values per step of the SiLU loops: four vectors of 8 whose exp chains and divisions are
/// independent, so the core overlaps them (a loop of one vector waits on its own chain:
/// Horner's steps and the division are latency, not throughput).
const LANES_IN_FLIGHT: usize = 32;

/// `f(out_i, z_i)` for z = x * a + b, [`LANES_IN_FLIGHT`] values at a time.
#[inline(always)]
fn for_each_affine<T: Real>(out: &mut [T], x: &[T], (a, b): (T, T), f: impl Fn(&mut T, T)) {
    let mut outs = out.chunks_exact_mut(LANES_IN_FLIGHT);
    let mut xs = x.chunks_exact(LANES_IN_FLIGHT);
    for (o, xi) in (&mut outs).zip(&mut xs) {
        let z: [T; LANES_IN_FLIGHT] = std::array::from_fn(|i| xi[i] * a + b);
        for (o, z) in o.iter_mut().zip(z) {
            f(o, z);
        }
    }
    for (o, &v) in outs.into_remainder().iter_mut().zip(xs.remainder()) {
        f(o, v * a + b);
    }
}

/// y = z * sigmoid(z) for z = x * a + b (GroupNorm's affine, then SiLU).
#[inline(always)]
pub(crate) fn silu_affine<T: Real>(y: &mut [T], x: &[T], a: T, b: T) {
    for_each_affine(y, x, (a, b), |o, z| *o = z * sigmoid(z));
}

/// d *= silu'(z) for z = x * a + b (GroupNorm's affine), in place.
#[inline(always)]
pub(crate) fn silu_grad_affine<T: Real>(d: &mut [T], x: &[T], a: T, b: T) {
    for_each_affine(d, x, (a, b), |g, z| *g *= silu_grad(z));
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
