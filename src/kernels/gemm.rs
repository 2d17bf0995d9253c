//! Matrix products through the `gemm` crate (runtime-dispatched AVX-512/AVX2/FMA micro-kernels).
//! Every matrix here is row-major and dense; a transposed operand is the same buffer read with
//! its strides swapped, so no transpose is ever materialised.

pub use super::bf16::layout::Tr;
use super::bf16::layout::{PackedA, Src};
use super::bf16::{self, Precision};
use super::real::Real;

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
    let lda = if ta == Tr::No { k } else { m };
    let ldb = if tb == Tr::No { n } else { k };
    matmul_strided(dst, n, m, n, k, a, lda, ta, b, ldb, tb, accumulate, threads)
}

/// [`matmul`] on sub-matrices: each operand's rows (as stored) are `ld*` elements apart, so a
/// band of columns of a larger row-major matrix can be read or written in place.
#[allow(clippy::too_many_arguments)]
pub fn matmul_strided<T: Real>(
    dst: &mut [T],
    ldd: usize,
    m: usize,
    n: usize,
    k: usize,
    a: &[T],
    lda: usize,
    ta: Tr,
    b: &[T],
    ldb: usize,
    tb: Tr,
    accumulate: bool,
    threads: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    let fits = |len: usize, rows: usize, cols: usize, ld: usize| cols <= ld && len >= (rows - 1) * ld + cols;
    assert!(fits(dst.len(), m, n, ldd), "matmul: dst too small for [{m}, {n}] with row stride {ldd}");
    if k == 0 {
        if !accumulate {
            for row in dst.chunks_mut(ldd).take(m) {
                row[..n].fill(T::ZERO);
            }
        }
        return;
    }
    let (ar, ac) = if ta == Tr::No { (m, k) } else { (k, m) };
    let (br, bc) = if tb == Tr::No { (k, n) } else { (n, k) };
    assert!(fits(a.len(), ar, ac, lda) && fits(b.len(), br, bc, ldb), "matmul: operand sizes");
    // (row stride, column stride) of op(a) and op(b)
    let (a_rs, a_cs) = match ta {
        Tr::No => (lda as isize, 1),
        Tr::Yes => (1, lda as isize),
    };
    let (b_rs, b_cs) = match tb {
        Tr::No => (ldb as isize, 1),
        Tr::Yes => (1, ldb as isize),
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
            ldd as isize,
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

/// The left operand of a series of products (a conv's weights, used for every image and band):
/// as given in fp32, or converted once to bf16 pairs when the products run in bf16.
pub enum Lhs<'a, T> {
    Plain { m: usize, k: usize, a: &'a [T], lda: usize, ta: Tr },
    Bf16(PackedA<'a>),
}

impl<'a, T: Real> Lhs<'a, T> {
    /// `op(a)` (`m` x `k`), packed into `buf` when `precision` is bf16 and `T` is f32 (else the
    /// products run in `T`). The bf16 products run on [`bf16::Kernel::best`]: the portable
    /// kernel where the CPU has no AVX512_BF16 (`bf16::resolve` lets users there ask for bf16
    /// only through `MDC_BF16_KERNEL=portable`).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        precision: Precision,
        m: usize,
        k: usize,
        a: &'a [T],
        lda: usize,
        ta: Tr,
        buf: &'a mut Vec<u32>,
    ) -> Self {
        match T::as_f32(a) {
            Some(data) if precision == Precision::Bf16 => {
                Lhs::Bf16(bf16::pack_a(m, k, Src { data, ld: lda, tr: ta }, buf))
            }
            _ => Lhs::Plain { m, k, a, lda, ta },
        }
    }

    /// `dst[m, n] (+)= self x op(b)`, rows of `dst` `ldd` apart; `buf` holds b's bf16 packing.
    #[allow(clippy::too_many_arguments)]
    pub fn times(
        &self,
        dst: &mut [T],
        ldd: usize,
        n: usize,
        b: &[T],
        ldb: usize,
        tb: Tr,
        accumulate: bool,
        threads: usize,
        buf: &mut Vec<u32>,
    ) {
        match self {
            Lhs::Plain { m, k, a, lda, ta } => {
                matmul_strided(dst, ldd, *m, n, *k, a, *lda, *ta, b, ldb, tb, accumulate, threads)
            }
            Lhs::Bf16(pa) => {
                let (b, dst) = (T::as_f32(b), T::as_f32_mut(dst));
                let (Some(b), Some(dst)) = (b, dst) else {
                    unreachable!("packed for bf16 only when T is f32")
                };
                let pb = bf16::pack_b(pa.dims().1, n, Src { data: b, ld: ldb, tr: tb }, buf, threads);
                bf16::packed_matmul(bf16::Kernel::best(), dst, ldd, pa, &pb, accumulate, threads);
            }
        }
    }
}

impl<T: Real> Lhs<'_, T> {
    /// [`Self::times`] with B (k x n, row-major) made row by row by `fill(row, out)`: in bf16,
    /// two rows at a time, converted while in L1 (`rows` holds them); in fp32, all rows at
    /// once into `rows`, then one product.
    #[allow(clippy::too_many_arguments)]
    pub fn times_rows(
        &self,
        dst: &mut [T],
        ldd: usize,
        n: usize,
        mut fill: impl FnMut(usize, &mut [T]),
        accumulate: bool,
        threads: usize,
        rows: &mut Vec<T>,
        buf: &mut Vec<u32>,
    ) {
        match self {
            Lhs::Plain { k, .. } => {
                let b = super::workspace::sized(rows, k * n);
                for (r, out) in b.chunks_exact_mut(n.max(1)).take(*k).enumerate() {
                    fill(r, out);
                }
                self.times(dst, ldd, n, b, n, Tr::No, accumulate, threads, buf);
            }
            Lhs::Bf16(pa) => {
                let k = pa.dims().1;
                let pair = super::workspace::sized(rows, 2 * n);
                let mut packer = bf16::PairPacker::new(k, n, buf);
                for p in 0..k.div_ceil(2) {
                    let (r0, r1) = pair.split_at_mut(n);
                    fill(2 * p, r0);
                    let padding = 2 * p + 1 == k;
                    if !padding {
                        fill(2 * p + 1, r1);
                    }
                    packer.pair(p, T::as_f32(pair).expect("packed for bf16 only when T is f32"), padding);
                }
                let (Some(dst), pb) = (T::as_f32_mut(dst), packer.finish()) else {
                    unreachable!("packed for bf16 only when T is f32")
                };
                bf16::packed_matmul(bf16::Kernel::best(), dst, ldd, pa, &pb, accumulate, threads);
            }
        }
    }
}

/// [`matmul_strided`] at `precision`, packing through the two buffers when it is bf16.
#[allow(clippy::too_many_arguments)]
pub fn matmul_at<T: Real>(
    precision: Precision,
    bufs: (&mut Vec<u32>, &mut Vec<u32>),
    dst: &mut [T],
    ldd: usize,
    m: usize,
    n: usize,
    k: usize,
    (a, lda, ta): (&[T], usize, Tr),
    (b, ldb, tb): (&[T], usize, Tr),
    accumulate: bool,
    threads: usize,
) {
    Lhs::new(precision, m, k, a, lda, ta, bufs.0).times(dst, ldd, n, b, ldb, tb, accumulate, threads, bufs.1)
}

/// `dst[m, n] (+)= A x op(b)` at `precision`, with A (`m` x `k`, row-major) made row by row by
/// `fill(row, out)`: in bf16 each row is converted while still in L1 (`rows` holds one); in
/// fp32 all rows go into `rows`, then one product.
#[allow(clippy::too_many_arguments)]
pub fn matmul_rows_a<T: Real>(
    precision: Precision,
    bufs: (&mut Vec<u32>, &mut Vec<u32>),
    dst: &mut [T],
    ldd: usize,
    (m, n, k): (usize, usize, usize),
    mut fill: impl FnMut(usize, &mut [T]),
    (b, ldb, tb): (&[T], usize, Tr),
    accumulate: bool,
    threads: usize,
    rows: &mut Vec<T>,
) {
    if precision == Precision::Bf16 && T::as_f32(b).is_some() {
        let row = super::workspace::sized(rows, k);
        let mut packer = bf16::RowPacker::new(m, k, bufs.0);
        for i in 0..m {
            fill(i, row);
            packer.row(i, T::as_f32(row).expect("checked above"));
        }
        Lhs::Bf16(packer.finish()).times(dst, ldd, n, b, ldb, tb, accumulate, threads, bufs.1);
    } else {
        let a = super::workspace::sized(rows, m * k);
        for (i, out) in a.chunks_exact_mut(k.max(1)).take(m).enumerate() {
            fill(i, out);
        }
        matmul_strided(dst, ldd, m, n, k, a, k, Tr::No, b, ldb, tb, accumulate, threads);
    }
}
