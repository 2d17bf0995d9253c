//! Matrix products through the `gemm` crate (runtime-dispatched AVX-512/AVX2/FMA micro-kernels).
//! Every matrix here is row-major and dense; a transposed operand is the same buffer read with
//! its strides swapped, so no transpose is ever materialised.

use super::real::Real;

/// How an operand buffer is read: as stored (row-major [rows, cols]) or transposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tr {
    No,
    Yes,
}

/// `dst[m, n] (+)= op(a)[m, k] * op(b)[k, n]`, with `op(a)` = `a` stored [m, k] or, transposed,
/// `a` stored [k, m] (same for `b`). `accumulate` adds to `dst` instead of overwriting it.
/// `threads` > 1 lets the GEMM split its own work across the rayon pool.
#[allow(clippy::too_many_arguments)]
pub fn matmul<T: Real>(
    dst: &mut [T],
    m: usize,
    n: usize,
    k: usize,
    a: &[T],
    ta: Tr,
    b: &[T],
    tb: Tr,
    accumulate: bool,
    threads: usize,
) {
    assert!(dst.len() >= m * n && a.len() >= m * k && b.len() >= k * n, "matmul operand sizes");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst[..m * n].fill(T::ZERO);
        }
        return;
    }
    // (row stride, column stride) of op(a) and op(b)
    let (a_rs, a_cs) = match ta {
        Tr::No => (k as isize, 1),
        Tr::Yes => (1, m as isize),
    };
    let (b_rs, b_cs) = match tb {
        Tr::No => (n as isize, 1),
        Tr::Yes => (1, k as isize),
    };
    let par = if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
    // SAFETY: the asserts above bound every index gemm reads or writes; T is f32 or f64 (Real is
    // implemented for nothing else), both supported by gemm.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            T::ONE,
            T::ONE,
            false,
            false,
            false,
            par,
        )
    }
}
