//! SiLU, y = x * sigmoid(x); dy/dx = s * (1 + x * (1 - s)).

use rayon::prelude::*;

use crate::interp::real::Real;

/// Elements per parallel task: large enough that scheduling costs nothing next to the work.
const CHUNK: usize = 1 << 15;

#[inline(always)]
fn sigmoid<T: Real>(x: T) -> T {
    T::ONE / (T::ONE + (-x).exp_fast())
}

pub fn silu_forward<T: Real>(x: &[T], y: &mut [T]) {
    y.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(|(y, x)| {
        for (o, &v) in y.iter_mut().zip(x) {
            *o = v * sigmoid(v);
        }
    });
}

/// Overwrites `dy` with dx (the incoming gradient is not needed afterwards).
pub fn silu_backward_in_place<T: Real>(x: &[T], dy: &mut [T]) {
    dy.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(|(d, x)| {
        for (g, &v) in d.iter_mut().zip(x) {
            let s = sigmoid(v);
            *g *= s * (T::ONE + v * (T::ONE - s));
        }
    });
}
