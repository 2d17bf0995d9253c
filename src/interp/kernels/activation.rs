//! SiLU, y = x * sigmoid(x); dy/dx = s * (1 + x * (1 - s)).
//! The loops are compiled twice: for the baseline target and, picked at run time, with AVX2+FMA
//! (8 lanes instead of SSE2's 4; the exp is a branch-free polynomial so it vectorises).

use rayon::prelude::*;

use crate::interp::real::Real;

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

/// Runs `$body` (an expression over the chunk) compiled with AVX2+FMA when the CPU has them.
macro_rules! dispatch {
    ($name:ident, $inner:ident) => {
        fn $name<T: Real>(x: &[T], y: &mut [T]) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                fn wide<T: Real>(x: &[T], y: &mut [T]) {
                    $inner(x, y)
                }
                if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU supports the features `wide` was compiled for.
                    return unsafe { wide(x, y) };
                }
            }
            $inner(x, y)
        }
    };
}

dispatch!(forward_dispatch, forward_chunk);
dispatch!(backward_dispatch, backward_chunk);

pub fn silu_forward<T: Real>(x: &[T], y: &mut [T]) {
    y.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(|(y, x)| forward_dispatch(x, y));
}

/// Overwrites `dy` with dx (the incoming gradient is not needed afterwards).
pub fn silu_backward_in_place<T: Real>(x: &[T], dy: &mut [T]) {
    dy.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(|(d, x)| backward_dispatch(x, d));
}
