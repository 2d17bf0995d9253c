//! bf16 x bf16 -> fp32 matrix product on AVX512_BF16.
//!
//! `VDPBF16PS` multiplies 16 lanes of bf16 *pairs* and adds both products to 16 fp32 lanes, so
//! both operands are packed with consecutive k values side by side in one 32-bit word (even k in
//! the low half):
//! - A (m x k) as rows of k/2 words: the micro-kernel broadcasts one word of a row (a pair of
//!   that row's k values) to all lanes. From a row-major source this is a plain conversion.
//! - B (k x n) in panels of [`NR`] columns, each panel k/2 rows of [`NR`] words: word (p, j)
//!   holds b[2p, j] and b[2p+1, j]. From a row-major source: two rows converted at once and
//!   interleaved by one permute.
//!
//! Conversion happens in packing (each operand is read once in fp32 and written once in bf16).
//! Two micro-kernels read these layouts (see [`Kernel`]):
//! - AVX512_BF16 keeps an [`MR`] x [`NR`] tile of C in 24 zmm accumulators; blocks of [`KC`]
//!   pairs of B stay in L1 while a block of [`MC`] rows of A streams from L2.
//! - AMX (Intel Sapphire Rapids and later) multiplies whole tiles: 16 rows of A by 16 pairs of
//!   k by 16 columns per `TDPBF16PS` (`amx.rs`). A tile load reads 16 rows of 16 words, so both
//!   layouts are padded with zeros: rows of A to a multiple of [`ROW_STEP`], pairs of k to a
//!   multiple of [`PAIR_STEP`]. The zero products leave the sums unchanged.

use super::layout::{mask, PackedA, PackedB, Src, Tr, NR, PAIR_STEP, ROW_STEP};
use super::SendPtr;

/// Rows of the micro-kernel's C tile.
const MR: usize = 12;
/// Pairs of k per cache block: a B panel block is KC * NR * 4 = 32 KiB (L1 is 48 KiB).
const KC: usize = 256;
/// Rows of A per cache block: MC * KC * 4 = 128 KiB, well inside L2.
const MC: usize = 128;
/// Words per row of packed A (and rows per panel of packed B) for depth `k`.
fn padded_pairs(k: usize) -> usize {
    k.div_ceil(2).next_multiple_of(PAIR_STEP)
}

/// Which micro-kernel multiplies packed operands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// `VDPBF16PS` on zmm registers (AVX512_BF16: AMD Zen 4 and later, Intel Cooper Lake and
    /// later).
    Avx512,
    /// `TDPBF16PS` on AMX tiles (Intel Sapphire Rapids and later): 16 times the work per
    /// instruction.
    Amx,
}

impl Kernel {
    /// The fastest kernel this CPU runs: AMX where the CPU and the OS allow it, unless the
    /// environment says `MDC_BF16_KERNEL=avx512` (to compare the two).
    pub fn best() -> Kernel {
        static BEST: std::sync::OnceLock<Kernel> = std::sync::OnceLock::new();
        *BEST.get_or_init(|| {
            let forced = std::env::var("MDC_BF16_KERNEL").is_ok_and(|v| v == "avx512");
            if !forced && super::amx::available() {
                Kernel::Amx
            } else {
                Kernel::Avx512
            }
        })
    }

    /// Every kernel this CPU runs (for tests and benchmarks that compare them).
    pub fn all_available() -> Vec<Kernel> {
        let mut all = Vec::new();
        if super::available() {
            all.push(Kernel::Avx512);
        }
        if super::amx::available() {
            all.push(Kernel::Amx);
        }
        all
    }

    /// The instruction set's name, for reports.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Avx512 => "AVX512_BF16",
            Kernel::Amx => "AMX-BF16",
        }
    }
}

/// `len` words of `v` starting on a 64-byte line (AMX tile loads that straddle lines run about
/// three times slower), growing `v` when it is too short.
pub(super) fn words(v: &mut Vec<u32>, len: usize) -> &mut [u32] {
    crate::kernels::workspace::sized_aligned(v, len)
}

fn pair(lo: f32, hi: f32) -> u32 {
    super::to_bf16(lo) as u32 | (super::to_bf16(hi) as u32) << 16
}

fn assert_available() {
    assert!(
        super::available(),
        "bf16 kernels called on a CPU without AVX512_BF16 (callers check `available`)"
    );
}

/// `m` rows of packed A for depth `k` in `buf`, the padding rows zeroed.
fn packed_a_rows(m: usize, k: usize, buf: &mut Vec<u32>) -> &mut [u32] {
    let kp = padded_pairs(k);
    let out = words(buf, m.next_multiple_of(ROW_STEP) * kp);
    out[m * kp..].fill(0);
    out
}

/// Packs `op(a)` (`m` x `k`) into `buf`.
pub fn pack_a<'a>(m: usize, k: usize, a: Src, buf: &'a mut Vec<u32>) -> PackedA<'a> {
    assert_available();
    a.check(m, k, "a");
    let kp = padded_pairs(k);
    let out = packed_a_rows(m, k, buf);
    match a.tr {
        // SAFETY: the CPU has the features (asserted above); `check` bounds every row read.
        Tr::No => unsafe {
            for (i, row) in out.chunks_exact_mut(kp).take(m).enumerate() {
                let (pairs, padding) = row.split_at_mut(k.div_ceil(2));
                avx512::convert_row(&a.data[i * a.ld..i * a.ld + k], pairs);
                padding.fill(0);
            }
        },
        Tr::Yes => {
            out[..m * kp].fill(0);
            // a(i, kk) = data[kk * ld + i]: read source rows in order, write words strided
            for p in 0..k.div_ceil(2) {
                let lo = &a.data[2 * p * a.ld..2 * p * a.ld + m];
                let hi = (2 * p + 1 < k).then(|| &a.data[(2 * p + 1) * a.ld..(2 * p + 1) * a.ld + m]);
                for i in 0..m {
                    out[i * kp + p] = pair(lo[i], hi.map_or(0.0, |h| h[i]));
                }
            }
        }
    }
    PackedA { m, k, kp, data: out }
}

/// Packs `op(b)` (`k` x `n`) into `buf`, spreading the panels over `threads` rayon tasks.
pub fn pack_b<'a>(k: usize, n: usize, b: Src, buf: &'a mut Vec<u32>, threads: usize) -> PackedB<'a> {
    assert_available();
    b.check(k, n, "b");
    let kp = padded_pairs(k);
    let panels = n.div_ceil(NR);
    let out = words(buf, panels * kp * NR);
    let pack = |jp: usize, panel: &mut [u32]| {
        let j0 = jp * NR;
        let cols = NR.min(n - j0);
        match b.tr {
            // SAFETY: the CPU has the features (asserted above); `check` bounds every read.
            Tr::No => unsafe {
                avx512::interleave_panel(k, b.data, b.ld, j0, cols, panel);
                panel[k.div_ceil(2) * NR..].fill(0);
            },
            Tr::Yes => {
                panel.fill(0);
                for c in 0..cols {
                    let src = &b.data[(j0 + c) * b.ld..(j0 + c) * b.ld + k];
                    for (p, w) in src.chunks(2).enumerate() {
                        panel[p * NR + c] = pair(w[0], w.get(1).copied().unwrap_or(0.0));
                    }
                }
            }
        }
    };
    if threads > 1 && panels > 1 && kp > 0 {
        use rayon::prelude::*;
        out.par_chunks_mut(kp * NR).enumerate().for_each(|(jp, p)| pack(jp, p));
    } else if kp > 0 {
        out.chunks_mut(kp * NR).enumerate().for_each(|(jp, p)| pack(jp, p));
    }
    PackedB { n, kp, data: out }
}

/// Packs A one row at a time, for rows made on the fly (im2col columns as the left operand of a
/// weight gradient): each row is converted while still in L1.
pub struct RowPacker<'a> {
    m: usize,
    k: usize,
    kp: usize,
    data: &'a mut [u32],
}

impl<'a> RowPacker<'a> {
    pub fn new(m: usize, k: usize, buf: &'a mut Vec<u32>) -> Self {
        assert_available();
        let kp = padded_pairs(k);
        RowPacker { m, k, kp, data: packed_a_rows(m, k, buf) }
    }

    /// Row `i` of A (`k` values).
    pub fn row(&mut self, i: usize, src: &[f32]) {
        let (k, kp) = (self.k, self.kp);
        assert!(i < self.m, "row {i} of {}", self.m);
        let row = &mut self.data[i * kp..(i + 1) * kp];
        let (pairs, padding) = row.split_at_mut(k.div_ceil(2));
        // SAFETY: features asserted in `new`; the slices bound every access.
        unsafe { avx512::convert_row(&src[..k], pairs) }
        padding.fill(0);
    }

    /// The packed A (every row must have been given).
    pub fn finish(self) -> PackedA<'a> {
        PackedA { m: self.m, k: self.k, kp: self.kp, data: self.data }
    }
}

/// Packs B one pair of rows at a time, for rows made on the fly (im2col columns): a pair is
/// converted while it is still in L1 instead of being written out whole in fp32 first.
pub struct PairPacker<'a> {
    n: usize,
    k: usize,
    kp: usize,
    data: &'a mut [u32],
    #[cfg(target_arch = "x86_64")]
    idx: avx512::Index,
}

impl<'a> PairPacker<'a> {
    pub fn new(k: usize, n: usize, buf: &'a mut Vec<u32>) -> Self {
        assert_available();
        let kp = padded_pairs(k);
        let data = words(buf, n.div_ceil(NR) * kp * NR);
        // SAFETY: the CPU has the features (asserted above).
        #[cfg(target_arch = "x86_64")]
        let idx = unsafe { avx512::pair_index() };
        PairPacker {
            n,
            k,
            kp,
            data,
            #[cfg(target_arch = "x86_64")]
            idx,
        }
    }

    /// Rows 2p (`rows[..n]`) and 2p+1 (`rows[n..2n]`, or absent past the end of k) of B.
    pub fn pair(&mut self, p: usize, rows: &[f32], last_is_padding: bool) {
        let n = self.n;
        assert!(p < self.k.div_ceil(2) && rows.len() >= if last_is_padding { n } else { 2 * n });
        #[cfg(target_arch = "x86_64")]
        for jp in 0..n.div_ceil(NR) {
            let j0 = jp * NR;
            let r0 = rows[j0..].as_ptr();
            let r1 = (!last_is_padding).then(|| rows[n + j0..].as_ptr());
            // SAFETY: features asserted in `new`; loads are masked to the row's n columns and
            // the store is inside panel jp's word block for pair p.
            unsafe {
                let out = self.data.as_mut_ptr().add((jp * self.kp + p) * NR);
                avx512::interleave_pair(r0, r1, NR.min(n - j0), out, self.idx)
            }
        }
    }

    /// The packed B (every pair must have been given).
    pub fn finish(self) -> PackedB<'a> {
        let given = self.k.div_ceil(2) * NR;
        for panel in self.data.chunks_exact_mut(self.kp * NR) {
            panel[given..].fill(0);
        }
        PackedB { n: self.n, kp: self.kp, data: self.data }
    }
}

/// `dst[m, n] (+)= A x B` (row stride `ldd`) on `kernel` (which the CPU must have: normally
/// [`Kernel::best`]), the panels of B split over `threads` rayon tasks.
pub fn packed_matmul(
    kernel: Kernel,
    dst: &mut [f32],
    ldd: usize,
    a: &PackedA,
    b: &PackedB,
    accumulate: bool,
    threads: usize,
) {
    assert_available();
    assert!(
        kernel != Kernel::Amx || super::amx::available(),
        "AMX kernel called on a CPU (or OS) without AMX-BF16"
    );
    assert_eq!(a.kp, b.kp, "bf16 matmul: inner sizes differ");
    let (m, n) = (a.m, b.n);
    if m == 0 || n == 0 {
        return;
    }
    assert!(n <= ldd && dst.len() >= (m - 1) * ldd + n, "bf16 matmul: dst too small for [{m}, {n}]");
    if a.kp == 0 {
        if !accumulate {
            dst.chunks_mut(ldd).take(m).for_each(|r| r[..n].fill(0.0));
        }
        return;
    }
    let panels = n.div_ceil(NR);
    let tasks = threads.clamp(1, panels);
    let c = SendPtr(dst.as_mut_ptr());
    let run = |t: usize| {
        let (p0, p1) = (panels * t / tasks, panels * (t + 1) / tasks);
        // SAFETY: the features are present (asserted); tasks write disjoint column ranges of dst,
        // all inside the bounds asserted above.
        unsafe {
            match kernel {
                Kernel::Avx512 => avx512::block(a, b, p0..p1, c.get(), ldd, accumulate),
                Kernel::Amx => super::amx::block(a, b, p0..p1, c.get(), ldd, accumulate),
            }
        }
    };
    if tasks == 1 {
        run(0);
    } else {
        use rayon::prelude::*;
        (0..tasks).into_par_iter().for_each(run);
    }
}

/// `dst[m, n] (+)= op(a) x op(b)` in bf16 with fp32 accumulation on `kernel` ([`Kernel::best`]
/// unless comparing), packing both operands into the two buffers (see [`pack_a`], [`pack_b`],
/// [`packed_matmul`] to reuse a packed operand).
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    kernel: Kernel,
    dst: &mut [f32],
    ldd: usize,
    m: usize,
    n: usize,
    k: usize,
    a: Src,
    b: Src,
    accumulate: bool,
    threads: usize,
    bufs: (&mut Vec<u32>, &mut Vec<u32>),
) {
    let pa = pack_a(m, k, a, bufs.0);
    let pb = pack_b(k, n, b, bufs.1, threads);
    packed_matmul(kernel, dst, ldd, &pa, &pb, accumulate, threads);
}

/// `out[i]` = `src[i]` rounded to bf16, for every i of `out`.
pub(super) fn convert_plain(src: &[f32], out: &mut [u16]) {
    assert_available();
    assert!(src.len() >= out.len());
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the CPU has the features (asserted above); reads and writes are masked to the length.
    unsafe {
        avx512::convert_plain(src.as_ptr(), out.len(), out.as_mut_ptr())
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;
    use std::ops::Range;

    use super::{mask, PackedA, PackedB, KC, MC, MR, NR};

    pub use std::arch::x86_64::__m512i as Index;

    /// Words of `out` = pairs of `src` converted to bf16 (a zero pads an odd length).
    ///
    /// # Safety
    /// The CPU has AVX512F, AVX512BW and AVX512_BF16 ([`crate::kernels::bf16::available`], which
    /// every caller asserts); `out` holds `src.len().div_ceil(2)` words (loads and stores are
    /// masked to those lengths).
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
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
    /// The CPU has AVX512F, AVX512BW and AVX512_BF16 ([`crate::kernels::bf16::available`], which
    /// every caller asserts).
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub unsafe fn pair_index() -> __m512i {
        let idx: [u16; 32] =
            std::array::from_fn(|i| if i % 2 == 0 { (i / 2) as u16 } else { (16 + i / 2) as u16 });
        _mm512_loadu_si512(idx.as_ptr().cast())
    }

    /// Words (p, 0..NR) of a panel at `out` from `cols` (<= NR) columns of rows `r0` and `r1`
    /// (`None`: a zero row past the end of k); columns past `cols` are zero.
    ///
    /// # Safety
    /// The CPU has AVX512F, AVX512BW and AVX512_BF16 ([`crate::kernels::bf16::available`], which
    /// every caller asserts); `r0` (and `r1` when given) are readable for `cols` (<= NR) floats,
    /// and `out` is writable for NR words (stores are full, loads masked).
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
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
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
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
    /// The CPU has AVX512F, AVX512BW and AVX512_BF16 ([`crate::kernels::bf16::available`], which
    /// every caller asserts); `b` holds rows `0..k` of columns `j0..j0 + cols` at stride `ld`
    /// (`Src::check` bounds them), `cols` <= NR, and `panel` holds `k.div_ceil(2) * NR` words.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
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

    /// C (+)= A x B over the B panels `panels`, blocked for the caches.
    ///
    /// # Safety
    /// The CPU has AVX512F, AVX512BW and AVX512_BF16 ([`crate::kernels::bf16::available`], which
    /// every caller asserts); `a` and `b` come from `pack_a`/`pack_b` with the same depth, `panels`
    /// are panels of `b`, and `c` with row stride `ldc` is writable for rows `0..a.m` and the
    /// columns of `panels` (up to `b.n`), written by no one else meanwhile.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub unsafe fn block(
        a: &PackedA,
        b: &PackedB,
        panels: Range<usize>,
        c: *mut f32,
        ldc: usize,
        accumulate: bool,
    ) {
        let (m, n, kp) = (a.m, b.n, a.kp);
        for k0 in (0..kp).step_by(KC) {
            let kn = KC.min(kp - k0);
            let add = accumulate || k0 > 0;
            for i0 in (0..m).step_by(MC) {
                let i1 = (i0 + MC).min(m);
                for jp in panels.clone() {
                    let j0 = jp * NR;
                    let cols = NR.min(n - j0);
                    let bp = b.data.as_ptr().add(jp * kp * NR + k0 * NR);
                    let mut i = i0;
                    while i < i1 {
                        let rows = MR.min(i1 - i);
                        let ap = a.data.as_ptr().add(i * kp + k0);
                        let cp = c.add(i * ldc + j0);
                        tile_any(rows, &Tile { kn, a: ap, lda: kp, b: bp, c: cp, ldc, cols, add });
                        i += rows;
                    }
                }
            }
        }
    }

    /// One micro-kernel call: C[rows, cols] (+)= A[rows, 2kn] x B[2kn, cols].
    #[derive(Clone, Copy)]
    struct Tile {
        kn: usize,
        a: *const u32,
        lda: usize,
        b: *const u32,
        c: *mut f32,
        ldc: usize,
        cols: usize,
        add: bool,
    }

    /// # Safety
    /// As [`tile`], with `rows` in `1..=MR`.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    unsafe fn tile_any(rows: usize, t: &Tile) {
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
    /// The CPU has AVX512F, AVX512BW and AVX512_BF16 ([`crate::kernels::bf16::available`], which
    /// every caller asserts); `t.a` is readable for `R` rows of `t.kn` words at stride `t.lda`,
    /// `t.b` for `t.kn` rows of NR words, and `t.c` writable for `R` rows of `t.cols` floats at
    /// stride `t.ldc` (the stores are masked to `cols`).
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
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
mod avx512 {
    //! Never called: `available()` is false off x86-64 and every entry point asserts it.
    use std::ops::Range;

    use super::{PackedA, PackedB};

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
    pub unsafe fn block(_: &PackedA, _: &PackedB, _: Range<usize>, _: *mut f32, _: usize, _: bool) {
        unreachable!("bf16 kernels need x86-64")
    }
}
