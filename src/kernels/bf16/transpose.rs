//! 16 x 16 blocks of 32-bit values transposed in zmm registers, for the layout changes of the
//! implicit convs: channel planes to channels-last rows and back. Element by element these
//! scattered loads and stores cost more than the products they feed. Each routine runs its
//! AVX-512 version where [`super::vector_routines`] says so, else the portable one
//! (`portable.rs`), which writes the same values.

use super::portable;
use super::vector_routines;

/// dst(i)[0..rows] = lane i of rows `0..rows` (16 x 16 transpose of 32-bit values):
/// `src(r)` points at row r (`rows` of them, each `lanes` wide); `dst(i)` for i < `lanes`
/// receives `rows` values.
///
/// # Safety
/// `rows` and `lanes` are at most 16, `src(r)` is readable for `lanes` words for r < `rows`,
/// and `dst(i)` writable for `rows` words for i < `lanes`.
pub unsafe fn transpose_block(
    rows: usize,
    lanes: usize,
    src: impl Fn(usize) -> *const u32,
    dst: impl Fn(usize) -> *mut u32,
) {
    if vector_routines() {
        imp::transpose_block(rows, lanes, src, dst)
    } else {
        portable::transpose_block(rows, lanes, src, dst)
    }
}

/// Like [`transpose_block`] for fp32 rows, adding `bias[i]` to output row i.
///
/// # Safety
/// As [`transpose_block`] for floats, and `bias`, when given, has at least `lanes` values.
pub unsafe fn transpose_block_bias(
    rows: usize,
    lanes: usize,
    src: impl Fn(usize) -> *const f32,
    bias: Option<&[f32]>,
    dst: impl Fn(usize) -> *mut f32,
) {
    if vector_routines() {
        imp::transpose_block_bias(rows, lanes, src, bias, dst)
    } else {
        portable::transpose_block_bias(rows, lanes, src, bias, dst)
    }
}

/// For channel pairs `0..pairs` (at most 16): row c = the bf16 pairs (lo(c)[x], hi(c)[x])
/// for x in `0..n` (at most 16; `hi(c)` null: zeros); then transposed, `dst(x)` receives
/// the `pairs` words of position x.
///
/// # Safety
/// `pairs` and `n` are at most 16, `lo(c)` (and `hi(c)` unless null) are readable for `n`
/// floats for c < `pairs`, and `dst(x)` writable for `pairs` words for x < `n`.
pub unsafe fn pair_and_transpose(
    pairs: usize,
    n: usize,
    lo: impl Fn(usize) -> *const f32,
    hi: impl Fn(usize) -> *const f32,
    dst: impl Fn(usize) -> *mut u32,
) {
    if vector_routines() {
        imp::pair_and_transpose(pairs, n, lo, hi, dst)
    } else {
        portable::pair_and_transpose(pairs, n, lo, hi, dst)
    }
}

#[cfg(target_arch = "x86_64")]
mod imp {
    #[cfg(not(feature = "zmm-model"))]
    use std::arch::x86_64::*;

    #[cfg(feature = "zmm-model")]
    use super::super::zmm_model::*;

    use super::super::layout::mask;

    /// bf16 lane indices that interleave `cvtne2ps(h, l)` (l[i] in lane i, h[i] in lane 16 + i)
    /// into pairs (l[i], h[i]).
    const PAIR_INTERLEAVE: [u16; 32] = {
        let mut t = [0u16; 32];
        let mut i = 0;
        while i < 32 {
            t[i] = if i % 2 == 0 { (i / 2) as u16 } else { (16 + i / 2) as u16 };
            i += 1;
        }
        t
    };

    /// Lane indices of the butterfly stages (see [`transpose16`]): for distance d = 8 >> s,
    /// `[s][0]` makes row i (from rows i and i + d), `[s][1]` row i + d.
    const BUTTERFLY: [[[i32; 16]; 2]; 4] = {
        let mut t = [[[0i32; 16]; 2]; 4];
        let mut s = 0;
        while s < 4 {
            let d = 8 >> s;
            let mut j = 0;
            while j < 16 {
                t[s][0][j] = if j & d == 0 { j as i32 } else { (16 + j - d) as i32 };
                t[s][1][j] = if j & d == 0 { (j + d) as i32 } else { (16 + j) as i32 };
                j += 1;
            }
            s += 1;
        }
        t
    };

    /// Transposes 16 rows of 16 lanes in place: four butterfly stages (distance 8, 4, 2, 1),
    /// each swapping the off-diagonal blocks of the rows `d` apart. A macro, not a function, so
    /// that it is always inlined into the AVX-512 functions using it (and closures there would
    /// not inherit their target features).
    macro_rules! transpose16 {
        ($r:ident) => {
            for (s, [lo, hi]) in BUTTERFLY.iter().enumerate() {
                let d = 8 >> s;
                let (lo, hi) =
                    (_mm512_loadu_si512(lo.as_ptr().cast()), _mm512_loadu_si512(hi.as_ptr().cast()));
                for i in 0..16 {
                    if i & d == 0 {
                        let (a, b) = ($r[i], $r[i + d]);
                        $r[i] = _mm512_permutex2var_epi32(a, lo, b);
                        $r[i + d] = _mm512_permutex2var_epi32(a, hi, b);
                    }
                }
            }
        };
    }

    /// Rows `0..rows` of a block: `src(i)` points at row i's first lane; lanes past `lanes`
    /// and rows past `rows` read as zero.
    ///
    /// # Safety
    /// The CPU has AVX512F (callers run only where [`crate::kernels::bf16::available`] is true);
    /// `src(i)` is readable for `lanes` (<= 16) words for every i < `rows` (<= 16); the loads are
    /// masked to `lanes`.
    #[inline]
    #[cfg_attr(not(feature = "zmm-model"), target_feature(enable = "avx512f"))]
    unsafe fn load_block(rows: usize, lanes: usize, src: impl Fn(usize) -> *const u32) -> [__m512i; 16] {
        let m = mask(lanes);
        let mut r = [_mm512_setzero_si512(); 16];
        for (i, v) in r.iter_mut().enumerate().take(rows) {
            *v = _mm512_maskz_loadu_epi32(m, src(i).cast());
        }
        r
    }

    /// [`super::transpose_block`] in zmm registers.
    ///
    /// # Safety
    /// The CPU has AVX512F; as [`super::transpose_block`] (loads and stores are masked).
    #[cfg_attr(not(feature = "zmm-model"), target_feature(enable = "avx512f"))]
    pub unsafe fn transpose_block(
        rows: usize,
        lanes: usize,
        src: impl Fn(usize) -> *const u32,
        dst: impl Fn(usize) -> *mut u32,
    ) {
        let mut r = load_block(rows, lanes, src);
        transpose16!(r);
        let m = mask(rows);
        for (i, v) in r.iter().enumerate().take(lanes) {
            _mm512_mask_storeu_epi32(dst(i).cast(), m, *v);
        }
    }

    /// [`super::transpose_block_bias`] in zmm registers.
    ///
    /// # Safety
    /// The CPU has AVX512F; as [`super::transpose_block_bias`] (loads and stores are masked).
    #[cfg_attr(not(feature = "zmm-model"), target_feature(enable = "avx512f"))]
    pub unsafe fn transpose_block_bias(
        rows: usize,
        lanes: usize,
        src: impl Fn(usize) -> *const f32,
        bias: Option<&[f32]>,
        dst: impl Fn(usize) -> *mut f32,
    ) {
        let mut r = load_block(rows, lanes, |i| src(i).cast());
        transpose16!(r);
        let m = mask(rows);
        for (i, v) in r.iter().enumerate().take(lanes) {
            let mut v = _mm512_castsi512_ps(*v);
            if let Some(b) = bias {
                v = _mm512_add_ps(v, _mm512_set1_ps(b[i]));
            }
            _mm512_mask_storeu_ps(dst(i), m, v);
        }
    }

    /// [`super::pair_and_transpose`] in zmm registers.
    ///
    /// # Safety
    /// The CPU has AVX512F, AVX512BW and AVX512_BF16; as [`super::pair_and_transpose`] (loads and
    /// stores are masked).
    #[cfg_attr(not(feature = "zmm-model"), target_feature(enable = "avx512f,avx512bw,avx512bf16"))]
    pub unsafe fn pair_and_transpose(
        pairs: usize,
        n: usize,
        lo: impl Fn(usize) -> *const f32,
        hi: impl Fn(usize) -> *const f32,
        dst: impl Fn(usize) -> *mut u32,
    ) {
        // bf16 element i of cvtne2ps(h, l) is l[i] (i < 16) or h[i - 16]: interleave them
        let idx = _mm512_loadu_si512(PAIR_INTERLEAVE.as_ptr().cast());
        let m = mask(n);
        let mut r = [_mm512_setzero_si512(); 16];
        for (c, v) in r.iter_mut().enumerate().take(pairs) {
            let l = _mm512_maskz_loadu_ps(m, lo(c));
            let h = if hi(c).is_null() { _mm512_setzero_ps() } else { _mm512_maskz_loadu_ps(m, hi(c)) };
            *v = _mm512_permutexvar_epi16(
                idx,
                std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(h, l)),
            );
        }
        transpose16!(r);
        let m = mask(pairs);
        for (x, v) in r.iter().enumerate().take(n) {
            _mm512_mask_storeu_epi32(dst(x).cast(), m, *v);
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod imp {
    //! Never called: `vector_routines()` is false off x86-64.
    /// # Safety
    /// Never called: `vector_routines()` is false off x86-64.
    pub unsafe fn transpose_block(
        _: usize,
        _: usize,
        _: impl Fn(usize) -> *const u32,
        _: impl Fn(usize) -> *mut u32,
    ) {
        unreachable!("AVX-512 transposes need x86-64")
    }
    /// # Safety
    /// Never called: `vector_routines()` is false off x86-64.
    pub unsafe fn transpose_block_bias(
        _: usize,
        _: usize,
        _: impl Fn(usize) -> *const f32,
        _: Option<&[f32]>,
        _: impl Fn(usize) -> *mut f32,
    ) {
        unreachable!("AVX-512 transposes need x86-64")
    }
    /// # Safety
    /// Never called: `vector_routines()` is false off x86-64.
    pub unsafe fn pair_and_transpose(
        _: usize,
        _: usize,
        _: impl Fn(usize) -> *const f32,
        _: impl Fn(usize) -> *const f32,
        _: impl Fn(usize) -> *mut u32,
    ) {
        unreachable!("AVX-512 transposes need x86-64")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn blocks_transpose_with_ragged_edges() {
        for vector in [false, super::super::available()] {
            for (rows, lanes) in [(16, 16), (7, 16), (16, 5), (3, 9), (1, 1)] {
                transposes_one_block(vector, rows, lanes);
            }
        }
    }

    /// Where the CPU has AVX-512, its pairing and bias transposes write what the portable ones
    /// write (the portable ones run, and are checked against fp32, on every CPU).
    #[test]
    fn avx512_and_portable_pairing_and_bias_transposes_agree() {
        if !super::super::available() {
            eprintln!("skipped: this CPU has no AVX512_BF16 (the portable routines alone run)");
            return;
        }
        let src: Vec<f32> = (0..16 * 40).map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0 + 1e-3).collect();
        let bias: Vec<f32> = (0..16).map(|i| i as f32 * 0.25).collect();
        for (pairs, n) in [(16, 16), (5, 16), (16, 3), (7, 9), (1, 1)] {
            let run = |vector: bool| {
                let mut dst = vec![0u32; 16 * 20];
                let (out, from) = (dst.as_mut_ptr(), src.as_ptr());
                let lo = |c: usize| from.wrapping_add(2 * c * 20);
                // the last pair's second channel missing when pairs is odd
                let hi = |c: usize| {
                    if pairs % 2 == 1 && c + 1 == pairs {
                        std::ptr::null()
                    } else {
                        from.wrapping_add((2 * c + 1) * 20)
                    }
                };
                let to = |x: usize| out.wrapping_add(x * 20);
                // SAFETY: AVX-512 only where the CPU has it (checked above); rows are 20 apart
                unsafe {
                    if vector {
                        super::imp::pair_and_transpose(pairs, n, lo, hi, to)
                    } else {
                        super::portable::pair_and_transpose(pairs, n, lo, hi, to)
                    }
                }
                let mut fdst = vec![0f32; 16 * 20];
                let out = fdst.as_mut_ptr();
                let (rows, lanes) = (pairs, n);
                // SAFETY: as above
                unsafe {
                    let (from, to) =
                        (|r: usize| from.wrapping_add(r * 20), |i: usize| out.wrapping_add(i * 20));
                    if vector {
                        super::imp::transpose_block_bias(rows, lanes, from, Some(&bias), to)
                    } else {
                        super::portable::transpose_block_bias(rows, lanes, from, Some(&bias), to)
                    }
                }
                (dst, fdst.iter().map(|v| v.to_bits()).collect::<Vec<_>>())
            };
            assert_eq!(run(true), run(false), "pairs {pairs} n {n}");
        }
    }

    /// One block on AVX-512 (`vector`) or portably: each routine must write exactly its block.
    fn transposes_one_block(vector: bool, rows: usize, lanes: usize) {
        let src: Vec<u32> = (0..16 * 20).map(|i| i as u32 + 1).collect();
        let mut dst = vec![0u32; 16 * 24];
        let out = dst.as_mut_ptr();
        let (from, to) = (|r| src.as_ptr().wrapping_add(r * 20), |i| out.wrapping_add(i * 24));
        // SAFETY: AVX-512 only where the CPU has it; rows are 20 apart, output rows 24
        unsafe {
            if vector {
                super::imp::transpose_block(rows, lanes, from, to)
            } else {
                super::portable::transpose_block(rows, lanes, from, to)
            }
        };
        for i in 0..16 {
            for r in 0..24 {
                let want = if i < lanes && r < rows { src[r * 20 + i] } else { 0 };
                assert_eq!(dst[i * 24 + r], want, "vector {vector} rows {rows} lanes {lanes}: ({i}, {r})");
            }
        }
    }
}
