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

/// `out_i = f(z_i, d_i)` for z = x * a + b, [`LANES_IN_FLIGHT`] values at a time.
#[inline(always)]
fn map_affine<T: Real>(out: &mut [T], x: &[T], d: &[T], (a, b): (T, T), f: impl Fn(T, T) -> T) {
    let mut outs = out.chunks_exact_mut(LANES_IN_FLIGHT);
    let mut xs = x.chunks_exact(LANES_IN_FLIGHT);
    let mut ds = d.chunks_exact(LANES_IN_FLIGHT);
    for ((o, xi), di) in (&mut outs).zip(&mut xs).zip(&mut ds) {
        // a plain loop: `array::from_fn` is sometimes left a call, out of the AVX2 code
        let mut z = [T::ZERO; LANES_IN_FLIGHT];
        for (z, &v) in z.iter_mut().zip(xi) {
            *z = v * a + b;
        }
        for ((o, z), &d) in o.iter_mut().zip(z).zip(di) {
            *o = f(z, d);
        }
    }
    let rest = outs.into_remainder().iter_mut().zip(xs.remainder()).zip(ds.remainder());
    for ((o, &v), &d) in rest {
        *o = f(v * a + b, d);
    }
}

/// y = z * sigmoid(z) for z = x * a + b (GroupNorm's affine, then SiLU), plus `then_add` when
/// given (the time bias a ResBlock adds next).
#[inline(always)]
pub(crate) fn silu_affine<T: Real>(y: &mut [T], x: &[T], a: T, b: T, then_add: Option<T>) {
    match then_add {
        Some(c) => map_affine(y, x, x, (a, b), |z, _| z * sigmoid(z) + c),
        None => map_affine(y, x, x, (a, b), |z, _| z * sigmoid(z)),
    }
}

/// out = dy * silu'(z) for z = x * a + b (GroupNorm's affine).
#[inline(always)]
pub(crate) fn silu_grad_affine<T: Real>(out: &mut [T], dy: &[T], x: &[T], a: T, b: T) {
    map_affine(out, x, dy, (a, b), |z, d| d * silu_grad(z));
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
