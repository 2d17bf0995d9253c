//! The AVX512_BF16 routines of the bf16 GEMM (`gemm.rs`): conversion and packing into the
//! pair layouts, and the 12 x 32 micro-kernel on zmm registers. Off x86-64 the stubs below are
//! never called: `available()` is false there, so the portable routines run.

#[cfg(not(target_arch = "x86_64"))]
pub use elsewhere::*;
#[cfg(target_arch = "x86_64")]
pub use x86::*;

#[cfg(target_arch = "x86_64")]
mod x86 {
    #[cfg(not(feature = "zmm-model"))]
    use std::arch::x86_64::*;

    #[cfg(feature = "zmm-model")]
    use super::super::zmm_model::*;

    use super::super::gemm::MR;
    use super::super::layout::{mask, Tile, NR};

    #[cfg(feature = "zmm-model")]
    pub use super::super::zmm_model::__m512i as Index;
    #[cfg(not(feature = "zmm-model"))]
    pub use std::arch::x86_64::__m512i as Index;

    /// Words of `out` = pairs of `src` converted to bf16 (a zero pads an odd length).
    ///
    /// # Safety
    /// The CPU has AVX512F, AVX512BW and AVX512_BF16 ([`crate::kernels::bf16::available`]: callers
    /// check it); `out` holds `src.len().div_ceil(2)` words (loads and stores are
    /// masked to those lengths).
    #[cfg_attr(not(feature = "zmm-model"), target_feature(enable = "avx512f,avx512bw,avx512bf16"))]
    pub unsafe fn convert_row(src: &[f32], out: &mut [u32]) {
        let k = src.len();
        debug_assert_eq!(out.len(), k.div_ceil(2));
        let (s, o) = (src.as_ptr(), out.as_mut_ptr());
        let mut kk = 0;
        while kk < k {
            let rem = k - kk;
            let lo = _mm512_maskz_loadu_ps(mask(rem), s.add(kk));
            let hi = _mm512_maskz_loadu_ps(mask(rem.saturating_sub(16)), s.wrapping_add(kk + 16));
            let v: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo));
            _mm512_mask_storeu_epi32(o.add(kk / 2).cast(), mask(rem.div_ceil(2)), v);
            kk += 32;
        }
    }

    /// The permutation that interleaves two converted rows: bf16 element i of `cvtne2ps(r1, r0)`
    /// goes to 2i (row 2p) or 2(i-16)+1 (row 2p+1).
    ///
    /// # Safety
    /// The CPU has AVX512F, AVX512BW and AVX512_BF16 ([`crate::kernels::bf16::available`]: callers
    /// check it).
    #[cfg_attr(not(feature = "zmm-model"), target_feature(enable = "avx512f,avx512bw,avx512bf16"))]
    pub unsafe fn pair_index() -> __m512i {
        let idx: [u16; 32] =
            std::array::from_fn(|i| if i % 2 == 0 { (i / 2) as u16 } else { (16 + i / 2) as u16 });
        _mm512_loadu_si512(idx.as_ptr().cast())
    }

    /// Words (p, 0..NR) of a panel at `out` from `cols` (<= NR) columns of rows `r0` and `r1`
    /// (`None`: a zero row past the end of k); columns past `cols` are zero.
    ///
    /// # Safety
    /// The CPU has AVX512F, AVX512BW and AVX512_BF16 ([`crate::kernels::bf16::available`]: callers
    /// check it); `r0` (and `r1` when given) are readable for `cols` (<= NR) floats,
    /// and `out` is writable for NR words (stores are full, loads masked).
    #[inline]
    #[cfg_attr(not(feature = "zmm-model"), target_feature(enable = "avx512f,avx512bw,avx512bf16"))]
    pub unsafe fn interleave_pair(
        r0: *const f32,
        r1: Option<*const f32>,
        cols: usize,
        out: *mut u32,
        idx: __m512i,
    ) {
        for h in 0..2 {
            let m = mask(cols.saturating_sub(16 * h));
            let lo = _mm512_maskz_loadu_ps(m, r0.wrapping_add(16 * h));
            let hi = r1.map_or(_mm512_setzero_ps(), |r1| _mm512_maskz_loadu_ps(m, r1.wrapping_add(16 * h)));
            let v: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo));
            _mm512_storeu_si512(out.add(16 * h).cast(), _mm512_permutexvar_epi16(idx, v));
        }
    }

    /// `n` bf16 values at `out` from `n` values at `src`.
    ///
    /// # Safety
    /// The CPU has AVX512F, AVX512BW, AVX512VL and AVX512_BF16
    /// ([`crate::kernels::bf16::available`]); `src` is readable and `out` writable for `n` elements
    /// (loads and stores are masked to `n`).
    #[cfg_attr(not(feature = "zmm-model"), target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16"))]
    pub unsafe fn convert_plain(src: *const f32, n: usize, out: *mut u16) {
        for j in (0..n).step_by(16) {
            let m = mask(n - j);
            let v = _mm512_maskz_loadu_ps(m, src.add(j));
            let h: __m256i = std::mem::transmute(_mm512_cvtneps_pbh(v));
            _mm256_mask_storeu_epi16(out.add(j).cast(), m, h);
        }
    }

    /// One B panel: columns j0..j0+cols of the row-major k x ? matrix `b` (stride `ld`), word
    /// (p, j) = (b[2p, j], b[2p+1, j]); columns past `cols` are zero.
    ///
    /// # Safety
    /// The CPU has AVX512F, AVX512BW and AVX512_BF16 ([`crate::kernels::bf16::available`]: callers
    /// check it); `b` holds rows `0..k` of columns `j0..j0 + cols` at stride `ld`
    /// (`Src::check` bounds them), `cols` <= NR, and `panel` holds `k.div_ceil(2) * NR` words.
    #[cfg_attr(not(feature = "zmm-model"), target_feature(enable = "avx512f,avx512bw,avx512bf16"))]
    pub unsafe fn interleave_panel(
        k: usize,
        b: &[f32],
        ld: usize,
        j0: usize,
        cols: usize,
        panel: &mut [u32],
    ) {
        let idx = pair_index();
        let base = b.as_ptr();
        for p in 0..k.div_ceil(2) {
            let r0 = base.wrapping_add(2 * p * ld + j0);
            let r1 = (2 * p + 1 < k).then(|| r0.wrapping_add(ld));
            interleave_pair(r0, r1, cols, panel.as_mut_ptr().add(p * NR), idx);
        }
    }

    /// The micro-kernel for `rows` rows of C (see `gemm.rs`'s `for_each_tile`).
    ///
    /// # Safety
    /// As [`tile`], with `rows` in `1..=MR`.
    #[cfg_attr(not(feature = "zmm-model"), target_feature(enable = "avx512f,avx512bw,avx512bf16"))]
    pub unsafe fn tile_any(rows: usize, t: &Tile) {
        macro_rules! dispatch {
            ($($r:literal)*) => {
                match rows {
                    $($r => tile::<$r>(t),)*
                    _ => unreachable!("1..=MR rows"),
                }
            };
        }
        const _: () = assert!(MR == 12);
        dispatch!(1 2 3 4 5 6 7 8 9 10 11 12)
    }

    /// The micro-kernel for R rows, with R x 2 zmm accumulators.
    ///
    /// # Safety
    /// The CPU has AVX512F, AVX512BW and AVX512_BF16 ([`crate::kernels::bf16::available`]: callers
    /// check it); `t.a` is readable for `R` rows of `t.kn` words at stride `t.lda`,
    /// `t.b` for `t.kn` rows of NR words, and `t.c` writable for `R` rows of `t.cols` floats at
    /// stride `t.ldc` (the stores are masked to `cols`).
    #[inline]
    #[cfg_attr(not(feature = "zmm-model"), target_feature(enable = "avx512f,avx512bw,avx512bf16"))]
    unsafe fn tile<const R: usize>(t: &Tile) {
        let Tile { kn, a, lda, b, c, ldc, cols, add } = *t;
        let mut acc = [[_mm512_setzero_ps(); 2]; R];
        for p in 0..kn {
            let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(b.add(p * NR).cast()));
            let b1: __m512bh = std::mem::transmute(_mm512_loadu_si512(b.add(p * NR + 16).cast()));
            for (r, acc) in acc.iter_mut().enumerate() {
                let av: __m512bh = std::mem::transmute(_mm512_set1_epi32(*a.add(r * lda + p) as i32));
                acc[0] = _mm512_dpbf16_ps(acc[0], av, b0);
                acc[1] = _mm512_dpbf16_ps(acc[1], av, b1);
            }
        }
        let masks = [mask(cols), mask(cols.saturating_sub(16))];
        for (r, acc) in acc.iter().enumerate() {
            for h in 0..2 {
                let cp = c.add(r * ldc + 16 * h);
                let v = if add { _mm512_add_ps(acc[h], _mm512_maskz_loadu_ps(masks[h], cp)) } else { acc[h] };
                _mm512_mask_storeu_ps(cp, masks[h], v);
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod elsewhere {
    //! Never called: `available()` is false off x86-64, so the portable routines run there.
    use super::super::layout::Tile;

    /// # Safety
    /// Never called: it exists so the callers compile off x86-64, where `available()` is false.
    pub unsafe fn convert_row(_: &[f32], _: &mut [u32]) {
        unreachable!("bf16 kernels need x86-64")
    }
    /// # Safety
    /// Never called: it exists so the callers compile off x86-64, where `available()` is false.
    pub unsafe fn interleave_panel(_: usize, _: &[f32], _: usize, _: usize, _: usize, _: &mut [u32]) {
        unreachable!("bf16 kernels need x86-64")
    }
    /// # Safety
    /// Never called: it exists so the callers compile off x86-64, where `available()` is false.
    pub unsafe fn tile_any(_: usize, _: &Tile) {
        unreachable!("bf16 kernels need x86-64")
    }
    /// # Safety
    /// Never called: it exists so the callers compile off x86-64, where `available()` is false.
    pub unsafe fn convert_plain(_: *const f32, _: usize, _: *mut u16) {
        unreachable!("bf16 kernels need x86-64")
    }
}
