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
//! Three micro-kernels read these layouts (see [`Kernel`]):
//! - AVX512_BF16 keeps an [`MR`] x [`NR`] tile of C in 24 zmm accumulators; blocks of [`KC`]
//!   pairs of B stay in L1 while a block of [`MC`] rows of A streams from L2.
//! - AMX (Intel Sapphire Rapids and later) multiplies whole tiles: 16 rows of A by 16 pairs of
//!   k by 16 columns per `TDPBF16PS` (`amx.rs`). A tile load reads 16 rows of 16 words, so both
//!   layouts are padded with zeros: rows of A to a multiple of [`ROW_STEP`], pairs of k to a
//!   multiple of [`PAIR_STEP`]. The zero products leave the sums unchanged.
//! - The portable reference kernel (`portable.rs`): the AVX512_BF16 arithmetic in plain Rust,
//!   so that all of this runs, and is tested, on CPUs without the instructions.
//!
//! The packing routines run on AVX-512 where [`super::vector_routines`] says so, else their
//! portable versions, which write the same words.

use super::gemm_avx512 as avx512;
use super::layout::{PackedA, PackedB, Src, Tile, Tr, NR, PAIR_STEP, ROW_STEP};
use super::{portable, run_tasks, vector_routines, SendPtr};

/// Rows of the micro-kernel's C tile.
pub(super) const MR: usize = 12;
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
    /// The same arithmetic in plain Rust (`portable.rs`), on any CPU: the reference the tests
    /// run everywhere, and what `MDC_BF16_KERNEL=portable` runs a model on. Many times slower.
    Portable,
}

/// What `MDC_BF16_KERNEL` asks for (to compare kernels and conv paths): a kernel, and whether
/// 3x3 convs go through im2col or, on AVX512_BF16, run implicitly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KernelAsked {
    pub kernel: Option<Kernel>,
    pub im2col: bool,
    pub implicit: bool,
}

/// The values `MDC_BF16_KERNEL` takes, each with what it asks for.
const KERNEL_VALUES: [(&str, Option<Kernel>, bool, bool); 6] = [
    ("avx512", Some(Kernel::Avx512), false, false),
    ("avx512-implicit", Some(Kernel::Avx512), false, true),
    ("avx512-im2col", Some(Kernel::Avx512), true, false),
    ("amx-im2col", Some(Kernel::Amx), true, false),
    ("portable", Some(Kernel::Portable), false, false),
    ("portable-im2col", Some(Kernel::Portable), true, false),
];

impl KernelAsked {
    /// `value` of `MDC_BF16_KERNEL` read, or what is wrong with it.
    pub fn parse(value: &str) -> Result<KernelAsked, String> {
        let known = KERNEL_VALUES.iter().find(|(name, ..)| *name == value);
        let Some(&(_, kernel, im2col, implicit)) = known else {
            let names: Vec<&str> = KERNEL_VALUES.iter().map(|(name, ..)| *name).collect();
            return Err(format!(
                "MDC_BF16_KERNEL=\"{value}\": expected one of {} (or unset)",
                names.join(", ")
            ));
        };
        Ok(KernelAsked { kernel, im2col, implicit })
    }

    /// The environment's ask, read once (unset: nothing asked).
    pub fn from_env() -> Result<KernelAsked, String> {
        static ASKED: std::sync::OnceLock<Result<KernelAsked, String>> = std::sync::OnceLock::new();
        ASKED
            .get_or_init(|| match std::env::var("MDC_BF16_KERNEL") {
                Ok(value) => KernelAsked::parse(&value),
                Err(_) => Ok(KernelAsked::default()),
            })
            .clone()
    }

    /// The ask, with an unusable one ignored (`bf16::resolve` reports it to users).
    fn current() -> KernelAsked {
        KernelAsked::from_env().unwrap_or_default()
    }
}

impl Kernel {
    /// The kernel bf16 products run on: the one `MDC_BF16_KERNEL` asks for where this CPU runs
    /// it, else the fastest this CPU runs: AMX where the CPU and the OS allow it, else
    /// AVX512_BF16, else the portable one.
    pub fn best() -> Kernel {
        static BEST: std::sync::OnceLock<Kernel> = std::sync::OnceLock::new();
        *BEST.get_or_init(|| match KernelAsked::current().kernel {
            Some(kernel) if kernel.runs_here() => kernel,
            _ => [Kernel::Amx, Kernel::Avx512, Kernel::Portable].into_iter().find(|k| k.runs_here()).unwrap(),
        })
    }

    /// Whether this CPU (and OS) runs the kernel.
    pub fn runs_here(self) -> bool {
        match self {
            Kernel::Avx512 => super::available(),
            Kernel::Amx => super::amx::available(),
            Kernel::Portable => true,
        }
    }

    /// Whether `MDC_BF16_KERNEL=portable` (or `portable-im2col`) asks for the portable kernel
    /// throughout, the packing and layout routines included.
    pub fn portable_forced() -> bool {
        KernelAsked::current().kernel == Some(Kernel::Portable)
    }

    /// Whether `MDC_BF16_KERNEL` (`avx512-im2col`, `amx-im2col`, `portable-im2col`) asks for
    /// every conv through im2col and the GEMM, as before the implicit convs (to compare the two).
    pub fn im2col_forced() -> bool {
        KernelAsked::current().im2col
    }

    /// Whether mdc runs 3x3 convs as implicit GEMMs on this kernel by default. AMX: yes, unless
    /// `MDC_BF16_KERNEL=amx-im2col`. AVX512_BF16: only when asked with
    /// `MDC_BF16_KERNEL=avx512-implicit`, because that path was written on a CPU without AVX-512
    /// and its zmm code has not yet run on one; it becomes the default once its tests have
    /// passed and it has been measured on a Zen 4 or Zen 5 (docs/experiments/benchmarks.md).
    /// Portable: yes, so that the implicit convs' code is what runs (and is checked) everywhere.
    pub fn implicit_convs_by_default(self) -> bool {
        let asked = KernelAsked::current();
        match self {
            Kernel::Amx | Kernel::Portable => !asked.im2col,
            Kernel::Avx512 => asked.implicit,
        }
    }

    /// Every kernel this CPU runs (for tests and benchmarks that compare them): the portable
    /// one always.
    pub fn all_available() -> Vec<Kernel> {
        [Kernel::Portable, Kernel::Avx512, Kernel::Amx].into_iter().filter(|k| k.runs_here()).collect()
    }

    /// The instruction set's name, for reports.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Avx512 => "AVX512_BF16",
            Kernel::Amx => "AMX-BF16",
            Kernel::Portable => "portable reference kernel",
        }
    }
}

/// `len` words of `v` starting on a 64-byte line (AMX tile loads that straddle lines run about
/// three times slower), growing `v` when it is too short.
pub(super) fn words(v: &mut Vec<u32>, len: usize) -> &mut [u32] {
    crate::kernels::workspace::sized_aligned(v, len)
}

use portable::pair;

/// `m` rows of packed A for depth `k` in `buf`, the padding rows zeroed.
fn packed_a_rows(m: usize, k: usize, buf: &mut Vec<u32>) -> &mut [u32] {
    let kp = padded_pairs(k);
    let out = words(buf, m.next_multiple_of(ROW_STEP) * kp);
    out[m * kp..].fill(0);
    out
}

/// Packs `op(a)` (`m` x `k`) into `buf`.
pub fn pack_a<'a>(m: usize, k: usize, a: Src, buf: &'a mut Vec<u32>) -> PackedA<'a> {
    a.check(m, k, "a");
    let kp = padded_pairs(k);
    let out = packed_a_rows(m, k, buf);
    match a.tr {
        Tr::No => {
            for (i, row) in out.chunks_exact_mut(kp).take(m).enumerate() {
                let (pairs, padding) = row.split_at_mut(k.div_ceil(2));
                convert_row(&a.data[i * a.ld..i * a.ld + k], pairs);
                padding.fill(0);
            }
        }
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
    b.check(k, n, "b");
    let kp = padded_pairs(k);
    let panels = n.div_ceil(NR);
    let out = words(buf, panels * kp * NR);
    let pack = |jp: usize, panel: &mut [u32]| {
        let j0 = jp * NR;
        let cols = NR.min(n - j0);
        match b.tr {
            Tr::No => {
                if vector_routines() {
                    // SAFETY: the CPU has the features (`vector_routines`); `check` bounds every read.
                    unsafe { avx512::interleave_panel(k, b.data, b.ld, j0, cols, panel) }
                } else {
                    portable::interleave_panel(k, b.data, b.ld, j0, cols, panel);
                }
                panel[k.div_ceil(2) * NR..].fill(0);
            }
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
        let kp = padded_pairs(k);
        RowPacker { m, k, kp, data: packed_a_rows(m, k, buf) }
    }

    /// Row `i` of A (`k` values).
    pub fn row(&mut self, i: usize, src: &[f32]) {
        let (k, kp) = (self.k, self.kp);
        assert!(i < self.m, "row {i} of {}", self.m);
        let row = &mut self.data[i * kp..(i + 1) * kp];
        let (pairs, padding) = row.split_at_mut(k.div_ceil(2));
        convert_row(&src[..k], pairs);
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
    /// The AVX-512 interleave's permutation, where `vector_routines` says so.
    #[cfg(target_arch = "x86_64")]
    idx: Option<avx512::Index>,
}

impl<'a> PairPacker<'a> {
    pub fn new(k: usize, n: usize, buf: &'a mut Vec<u32>) -> Self {
        let kp = padded_pairs(k);
        let data = words(buf, n.div_ceil(NR) * kp * NR);
        // SAFETY: the CPU has the features (`vector_routines`).
        #[cfg(target_arch = "x86_64")]
        let idx = vector_routines().then(|| unsafe { avx512::pair_index() });
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
        for jp in 0..n.div_ceil(NR) {
            let (j0, at) = (jp * NR, (jp * self.kp + p) * NR);
            let cols = NR.min(n - j0);
            #[cfg(target_arch = "x86_64")]
            if let Some(idx) = self.idx {
                let r0 = rows[j0..].as_ptr();
                let r1 = (!last_is_padding).then(|| rows[n + j0..].as_ptr());
                // SAFETY: the CPU has the features (`new`); loads are masked to the row's n
                // columns and the store is inside panel jp's word block for pair p.
                unsafe { avx512::interleave_pair(r0, r1, cols, self.data.as_mut_ptr().add(at), idx) }
                continue;
            }
            let r1 = (!last_is_padding).then(|| &rows[n + j0..n + j0 + cols]);
            portable::interleave_pair(&rows[j0..j0 + cols], r1, cols, &mut self.data[at..at + NR]);
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
    assert!(
        kernel != Kernel::Avx512 || super::available(),
        "AVX512_BF16 kernel called on a CPU without AVX512_BF16"
    );
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
                Kernel::Avx512 => {
                    for_each_tile(a, b, p0..p1, c.get(), ldd, accumulate, |rows, t| avx512::tile_any(rows, t))
                }
                Kernel::Amx => super::amx::block(a, b, p0..p1, c.get(), ldd, accumulate),
                Kernel::Portable => {
                    for_each_tile(a, b, p0..p1, c.get(), ldd, accumulate, |rows, t| portable::tile(rows, t))
                }
            }
        }
    };
    run_tasks(tasks, run);
}

/// C (+)= A x B over the B panels `panels`, blocked for the caches and handed to `tile` (rows,
/// tile) a tile of at most [`MR`] rows at a time: per block of [`KC`] pairs of k (each tile's sum
/// starts from zero and is added to C, so every kernel forms the same sums), per block of [`MC`]
/// rows of A, per panel.
///
/// # Safety
/// `tile` runs on this CPU; `a` and `b` come from `pack_a`/`pack_b` with the same depth, `panels`
/// are panels of `b`, and `c` with row stride `ldc` is writable for rows `0..a.m` and the
/// columns of `panels` (up to `b.n`), written by no one else meanwhile.
unsafe fn for_each_tile(
    a: &PackedA,
    b: &PackedB,
    panels: std::ops::Range<usize>,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
    tile: impl Fn(usize, &Tile),
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
                for i in (i0..i1).step_by(MR) {
                    let ap = a.data.as_ptr().add(i * kp + k0);
                    let cp = c.add(i * ldc + j0);
                    tile(MR.min(i1 - i), &Tile { kn, a: ap, lda: kp, b: bp, c: cp, ldc, cols, add });
                }
            }
        }
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
    assert!(src.len() >= out.len());
    if vector_routines() {
        // SAFETY: the CPU has the features (`vector_routines`); reads and writes are masked to
        // the length.
        unsafe { avx512::convert_plain(src.as_ptr(), out.len(), out.as_mut_ptr()) }
    } else {
        portable::convert_plain(src, out);
    }
}

/// Words of `out` = pairs of `src` converted to bf16 (a zero pads an odd length).
fn convert_row(src: &[f32], out: &mut [u32]) {
    if vector_routines() {
        // SAFETY: the CPU has the features (`vector_routines`); the slices bound every access.
        unsafe { avx512::convert_row(src, out) }
    } else {
        portable::convert_row(src, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where the CPU has AVX512_BF16, its conversion and packing routines write the very words
    /// of the portable ones (which every CPU checks against fp32), NaN and subnormals included.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn avx512_and_portable_packers_write_the_same_words() {
        if !super::super::available() {
            eprintln!("skipped: this CPU has no AVX512_BF16 (the portable routines alone run)");
            return;
        }
        let specials = [f32::NAN, f32::INFINITY, -0.0, 1e-40, -3e-39, f32::MAX, 1.0 + 2f32.powi(-8)];
        let src: Vec<f32> = (0..1000)
            .map(|i| specials.get(i % 50).copied().unwrap_or((i as f32 * 0.37).sin() * 3.0))
            .collect();
        for k in [1usize, 2, 31, 32, 33, 77] {
            let (mut v, mut p) = (vec![0u32; k.div_ceil(2)], vec![0u32; k.div_ceil(2)]);
            // SAFETY: the CPU has the features (checked above); the slices bound every access
            unsafe { avx512::convert_row(&src[..k], &mut v) };
            portable::convert_row(&src[..k], &mut p);
            assert_eq!(v, p, "convert_row of {k}");
            let (mut v, mut p) = (vec![0u16; k], vec![0u16; k]);
            // SAFETY: as above
            unsafe { avx512::convert_plain(src.as_ptr(), k, v.as_mut_ptr()) };
            portable::convert_plain(&src[..k], &mut p);
            assert_eq!(v, p, "convert_plain of {k}");
        }
        for (k, ld, j0, cols) in [(7usize, 40, 3, 32), (8, 40, 0, 17), (1, 33, 1, 32), (16, 64, 32, 5)] {
            let (mut v, mut p) = (vec![7u32; k.div_ceil(2) * NR], vec![9u32; k.div_ceil(2) * NR]);
            // SAFETY: as above; rows 0..k of columns j0..j0 + cols lie inside src
            unsafe { avx512::interleave_panel(k, &src, ld, j0, cols, &mut v) };
            portable::interleave_panel(k, &src, ld, j0, cols, &mut p);
            assert_eq!(v, p, "interleave_panel k {k} ld {ld} j0 {j0} cols {cols}");
        }
    }
}
