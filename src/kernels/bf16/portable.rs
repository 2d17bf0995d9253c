//! The portable reference kernel: every AVX-512 routine of the bf16 kernels (conversion and
//! packing, the GEMM tile, the implicit convs' register blocks, the 16 x 16 transposes) in
//! plain Rust, on the very packed layouts (`layout.rs`) and with `VDPBF16PS`'s arithmetic.
//!
//! Why it exists: without it, none of the bf16 code runs on a CPU without AVX512_BF16 (AMD Zen
//! 3 and older, most Intel client CPUs), so its packing, layouts, block loops and the whole bf16
//! training step would be checked only on the machines that happen to have the instructions.
//! With it, they run everywhere: the tests check every kernel this CPU has against fp32,
//! `Portable` always among them, and `MDC_BF16_KERNEL=portable` runs a whole model in bf16 on
//! it (many times slower than fp32: a reference, not a fast path).
//!
//! The arithmetic, as Intel defines `VDPBF16PS`: each fp32 lane adds the product of the odd
//! (high) bf16 halves, then that of the even (low) halves, each add rounded to nearest even,
//! results that fall below fp32's normal range flushed to zero (FTZ). A product of two bf16
//! values is exact in fp32 (8 + 8 significant bits), so each step is one rounding, as in the
//! hardware. Conversions round to nearest even and flush subnormal inputs ([`to_bf16`]), as
//! `VCVTNE2PS2BF16` does, so no packed operand is subnormal (the hardware's DAZ never acts).
//! Sums are formed in the order the zmm kernels form them (per cache block of k, from zero,
//! then added to C), so results differ from them only where AMD and Intel order a pair's two
//! products differently.

use super::layout::{Block, Segment, Tile, NR};
use super::{from_bf16, to_bf16};

/// `acc` + the two products of a bf16 pair, as one `VDPBF16PS` lane.
#[inline(always)]
pub(super) fn dot_pair(acc: f32, a: u32, b: u32) -> f32 {
    let acc = flush(acc + from_bf16((a >> 16) as u16) * from_bf16((b >> 16) as u16));
    flush(acc + from_bf16(a as u16) * from_bf16(b as u16))
}

/// Results below the normal range become zero of the same sign (FTZ).
#[inline(always)]
fn flush(x: f32) -> f32 {
    if x.abs() < f32::MIN_POSITIVE {
        0f32.copysign(x)
    } else {
        x
    }
}

/// The bf16 pair (lo, hi) as one word, lo in the low half.
#[inline]
pub(super) fn pair(lo: f32, hi: f32) -> u32 {
    to_bf16(lo) as u32 | (to_bf16(hi) as u32) << 16
}

/// Words of `out` = pairs of `src` converted to bf16 (a zero pads an odd length).
pub(super) fn convert_row(src: &[f32], out: &mut [u32]) {
    debug_assert_eq!(out.len(), src.len().div_ceil(2));
    for (w, p) in out.iter_mut().zip(src.chunks(2)) {
        *w = pair(p[0], p.get(1).copied().unwrap_or(0.0));
    }
}

/// `out[i]` = `src[i]` rounded to bf16, for every i of `out`.
pub(super) fn convert_plain(src: &[f32], out: &mut [u16]) {
    for (o, &s) in out.iter_mut().zip(src) {
        *o = to_bf16(s);
    }
}

/// Words (p, 0..NR) of a B panel from `cols` (<= NR) columns of rows 2p (`r0`) and 2p + 1
/// (`r1`; `None`: a zero row past the end of k); the words past `cols` are zero.
pub(super) fn interleave_pair(r0: &[f32], r1: Option<&[f32]>, cols: usize, out: &mut [u32]) {
    for (j, w) in out[..NR].iter_mut().enumerate() {
        *w = if j < cols { pair(r0[j], r1.map_or(0.0, |r| r[j])) } else { 0 };
    }
}

/// One B panel: columns j0..j0+cols of the row-major k x ? matrix `b` (stride `ld`), word
/// (p, j) = (b[2p, j], b[2p+1, j]); columns past `cols` are zero.
pub(super) fn interleave_panel(k: usize, b: &[f32], ld: usize, j0: usize, cols: usize, panel: &mut [u32]) {
    for p in 0..k.div_ceil(2) {
        let r0 = &b[2 * p * ld + j0..2 * p * ld + j0 + cols];
        let r1 = (2 * p + 1 < k).then(|| &b[(2 * p + 1) * ld + j0..(2 * p + 1) * ld + j0 + cols]);
        interleave_pair(r0, r1, cols, &mut panel[p * NR..(p + 1) * NR]);
    }
}

/// One GEMM tile (`gemm.rs`'s `for_each_tile`): C[rows, cols] (+)= A x B, each element's sum
/// from zero over the tile's pairs of k, then added to C, as the zmm tile forms it.
///
/// # Safety
/// A is readable for `rows` rows of `t.kn` words at stride `t.lda`, B for `t.kn` rows of NR
/// words, and C writable for `rows` rows of `t.cols` floats at stride `t.ldc`.
pub(super) unsafe fn tile(rows: usize, t: &Tile) {
    for r in 0..rows {
        let row = std::slice::from_raw_parts(t.a.add(r * t.lda), t.kn);
        let mut acc = [0f32; NR];
        for (p, &w) in row.iter().enumerate() {
            let bp = std::slice::from_raw_parts(t.b.add(p * NR), NR);
            for (s, &bw) in acc.iter_mut().zip(bp) {
                *s = dot_pair(*s, w, bw);
            }
        }
        let cr = std::slice::from_raw_parts_mut(t.c.add(r * t.ldc), t.cols);
        for (d, s) in cr.iter_mut().zip(acc) {
            *d = if t.add { *d + s } else { s };
        }
    }
}

/// One register block of the implicit convs (`implicit_avx512.rs`): C[rows, 16 z columns]
/// (+ C when `add`) = the sum over the segments of A x B, as the zmm block computes it.
///
/// # Safety
/// The block's operands are readable (A: `rows` rows of `kn` words at stride `lda`; B: `kn`
/// rows of 16 z words at stride `ldb`) and C writable for `rows` rows of 16 z floats.
pub(super) unsafe fn implicit_block(blk: &Block, segments: &[Segment]) {
    let Block { rows, z, kn, lda, ldb, c, ldc, add } = *blk;
    let cols = 16 * z;
    for r in 0..rows {
        let mut acc = [0f32; 32];
        for s in segments {
            for p in 0..kn {
                let w = *s.a.add(r * lda + p);
                let bp = std::slice::from_raw_parts(s.b.add(p * ldb), cols);
                for (sum, &bw) in acc.iter_mut().zip(bp) {
                    *sum = dot_pair(*sum, w, bw);
                }
            }
        }
        let cr = std::slice::from_raw_parts_mut(c.add(r * ldc), cols);
        for (d, s) in cr.iter_mut().zip(acc) {
            *d = if add { *d + s } else { s };
        }
    }
}

/// dst(i)[0..rows] = element i of rows `0..rows` (`src(r)`, `lanes` wide), for i < `lanes`.
/// The rows may start anywhere (a weight gradient's image reads words at odd bf16 offsets).
///
/// # Safety
/// `src(r)` is readable for `lanes` words for r < `rows`, `dst(i)` writable for `rows` words for
/// i < `lanes`.
pub(super) unsafe fn transpose_block(
    rows: usize,
    lanes: usize,
    src: impl Fn(usize) -> *const u32,
    dst: impl Fn(usize) -> *mut u32,
) {
    for i in 0..lanes {
        for r in 0..rows {
            dst(i).add(r).write_unaligned(src(r).add(i).read_unaligned());
        }
    }
}

/// [`transpose_block`] for fp32 rows, adding `bias[i]` to output row i.
///
/// # Safety
/// As [`transpose_block`] for floats, and `bias`, when given, has at least `lanes` values.
pub(super) unsafe fn transpose_block_bias(
    rows: usize,
    lanes: usize,
    src: impl Fn(usize) -> *const f32,
    bias: Option<&[f32]>,
    dst: impl Fn(usize) -> *mut f32,
) {
    for i in 0..lanes {
        let b = bias.map_or(0.0, |b| b[i]);
        for r in 0..rows {
            let v = src(r).add(i).read_unaligned();
            dst(i).add(r).write_unaligned(if bias.is_some() { v + b } else { v });
        }
    }
}

/// dst(x)[c] = the bf16 pair (lo(c)[x], hi(c)[x]) (`hi(c)` null: zero) for c < `pairs`, x < `n`.
///
/// # Safety
/// `lo(c)` (and `hi(c)` unless null) are readable for `n` floats for c < `pairs`, and `dst(x)`
/// writable for `pairs` words for x < `n`.
pub(super) unsafe fn pair_and_transpose(
    pairs: usize,
    n: usize,
    lo: impl Fn(usize) -> *const f32,
    hi: impl Fn(usize) -> *const f32,
    dst: impl Fn(usize) -> *mut u32,
) {
    for c in 0..pairs {
        let (l, h) = (lo(c), hi(c));
        for x in 0..n {
            let hv = if h.is_null() { 0.0 } else { h.add(x).read_unaligned() };
            dst(x).add(c).write_unaligned(pair(l.add(x).read_unaligned(), hv));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lane_adds_the_high_product_first_then_the_low_one_each_rounded() {
        // acc = 1, high product 2^-24, low product 2^-24: each add alone is a tie that rounds to
        // even (1), so the lane stays 1, where one rounding of the exact sum would give 1 + 2^-23
        let tiny = pair(2f32.powi(-12), 2f32.powi(-12));
        assert_eq!(dot_pair(1.0, tiny, tiny), 1.0);
        // the order: -1 + 1 (high) then + 2^-30 (low) is exact; in the other order it is not
        let a = pair(2f32.powi(-15), 1.0);
        let b = pair(2f32.powi(-15), 1.0);
        assert_eq!(dot_pair(-1.0, a, b), 2f32.powi(-30));
    }

    #[test]
    fn results_below_the_normal_range_flush_to_zero() {
        let small = pair(0.0, 2f32.powi(-63));
        // 2^-126 - 2^-126 * 2^... : an exact subnormal result becomes zero of its sign
        assert_eq!(dot_pair(f32::MIN_POSITIVE, small, pair(0.0, -2f32.powi(-64))).to_bits(), 0);
        assert_eq!(flush(-1e-40).to_bits(), (-0f32).to_bits());
        assert!(flush(f32::NAN).is_nan());
        assert_eq!(flush(f32::MIN_POSITIVE), f32::MIN_POSITIVE);
    }
}
