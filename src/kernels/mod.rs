//! The numerics below the ops: forward and backward kernels (one module per op family), the
//! matrix products (fp32 and bf16), the scalar trait [`Real`] and the scratch buffers. Tensors are
//! flat NCHW slices (`[N, C, H, W]` images, `[N, D]` vectors); parallel kernels split the batch
//! across workers. Nothing here knows about graphs or ops.

pub mod activation;
pub mod attention;
pub mod bf16;
pub mod class_embedding;
pub mod conv;
mod conv_amx;
mod conv_geom;
pub mod elementwise;
pub mod embedding;
pub mod gemm;
pub mod linear;
pub mod norm;
pub mod real;
pub mod upsample;
mod winograd;
pub mod workspace;

pub use bf16::Precision;
pub use gemm::{matmul, matmul_strided, Tr};
pub use real::Real;
pub use winograd::enabled_by_env as winograd_enabled_by_env;
pub use workspace::{Pool, Workers};

/// Runs `f` compiled for AVX2+FMA when the CPU has them (the crate's baseline target is SSE2,
/// 4 lanes; the element-wise loops inlined into `f` then use 8). Inlining `f` into the
/// feature-enabled function is what recompiles it, so `f` must be a small closure over the
/// loop: LLVM does not inline a big one, which then silently stays SSE2. For big loops use
/// [`call_with_avx2`]. (Still SSE2 for that reason: the bias-gradient row sums in the conv
/// backward closures, a small part of a step.)
#[inline(always)]
pub fn with_avx2<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2,fma")]
        fn wide<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports the features `wide` is compiled for.
            return unsafe { wide(f) };
        }
    }
    f()
}

/// Whether the CPU has AVX2 and FMA (see [`call_with_avx2`]).
#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx2_fma() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

/// `f::<T>(args)` compiled for AVX2+FMA where the CPU has them, for loops too big for
/// [`with_avx2`]: a closure that big is not inlined into the feature-enabled function and stays
/// SSE2 (GroupNorm's did, unnoticed, until perf annotate showed `mulps` on xmm registers). The
/// macro defines a feature-enabled wrapper taking the arguments as written (`name: type`, the
/// names being locals of the caller) and returns its result from the enclosing closure or
/// function; `f` must be `#[inline(always)]` so that it is compiled into the wrapper.
macro_rules! call_with_avx2 {
    ($f:ident::<$t:ty>($($arg:ident: $ty:ty),* $(,)?)) => {{
        #[cfg(target_arch = "x86_64")]
        if $crate::kernels::has_avx2_fma() {
            #[target_feature(enable = "avx2,fma")]
            #[allow(clippy::too_many_arguments)]
            fn avx2<T: Real>($($arg: $ty),*) {
                $f($($arg),*)
            }
            // SAFETY: the CPU has the features `avx2` is compiled for.
            return unsafe { avx2::<$t>($($arg),*) };
        }
        $f($($arg),*)
    }};
}
pub(crate) use call_with_avx2;

/// Independent accumulators of [`sum_map`] and [`sum_zip`]: four AVX2 vectors, so that each
/// add waits on the one four before it, not on the last (one vector of eight made the sums
/// of GroupNorm's statistics wait on the adds' latency, a third of their speed on a Zen 3).
const ACCUMULATORS: usize = 32;

/// Sum with [`ACCUMULATORS`] independent accumulators: vectorises, overlaps the adds, and rounds
/// less than one long chain. Always inlined: a call would run it at the baseline's 4 lanes from
/// the AVX2 loops (`call_with_avx2!`) that use it.
#[inline(always)]
pub(crate) fn sum_map<T: Real>(xs: &[T], f: impl Fn(T) -> T) -> T {
    let mut acc = [T::ZERO; ACCUMULATORS];
    let chunks = xs.chunks_exact(ACCUMULATORS);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..ACCUMULATORS {
            acc[i] += f(c[i]);
        }
    }
    let mut total = rest.iter().map(|&v| f(v)).sum::<T>();
    for a in acc {
        total += a;
    }
    total
}

/// acc[c] += the sum of plane c of `planes` (acc.len() planes of equal length): a bias's
/// gradient from one image's output gradient [C, H, W]. Always inlined, as [`sum_map`].
#[inline(always)]
pub(crate) fn add_plane_sums<T: Real>(acc: &mut [T], planes: &[T]) {
    let plane_len = planes.len() / acc.len().max(1);
    for (a, plane) in acc.iter_mut().zip(planes.chunks_exact(plane_len.max(1))) {
        *a += sum_map(plane, |v| v);
    }
}

/// Sum of `f(a_i, b_i)` with [`ACCUMULATORS`] accumulators (always inlined, as [`sum_map`]).
#[inline(always)]
pub(crate) fn sum_zip<T: Real>(a: &[T], b: &[T], f: impl Fn(T, T) -> T) -> T {
    let mut acc = [T::ZERO; ACCUMULATORS];
    let n = a.len().min(b.len());
    let main = n - n % ACCUMULATORS;
    for (ca, cb) in a[..main].chunks_exact(ACCUMULATORS).zip(b[..main].chunks_exact(ACCUMULATORS)) {
        for i in 0..ACCUMULATORS {
            acc[i] += f(ca[i], cb[i]);
        }
    }
    let mut total = T::ZERO;
    for i in main..n {
        total += f(a[i], b[i]);
    }
    for v in acc {
        total += v;
    }
    total
}
