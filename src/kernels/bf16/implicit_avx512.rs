//! The AVX512_BF16 micro-kernels of the implicit 3x3 convolutions (AMD Zen 4 and later, and
//! Intel without AMX), same-size and stride-2: the same packed operands as the AMX kernels
//! (`implicit_conv.rs` makes them, `amx.rs` describes their geometry: per tap, where its
//! shifted rows start, so a stride-2 conv's phase grids need nothing more here), multiplied
//! with `VDPBF16PS` on zmm registers.
//!
//! A block of C stays in zmm accumulators, [`FWD_ROWS`] or [`WG_ROWS`] rows by one or two zmm
//! of 16 fp32 columns; per pair of k the kernel loads the row of B once into Z registers and
//! broadcasts one word of A per row of C (`VBROADCASTSS` from memory, a load without an ALU op).
//! In the release build the 12 x 2 block keeps its 24 accumulators in zmm0-23, B in zmm24-25 and
//! A in zmm26-27, with no spills.
//!
//! Zen 4 runs a 512-bit op as two 256-bit halves on its two 256-bit pipes: at most one zmm
//! `VDPBF16PS` a cycle (32 multiply-adds), where Intel's two 512-bit ports issue two. What that
//! changes for the blocking: with latency L, L independent accumulators keep Zen 4 busy against
//! 2L on Intel, and every load of B or broadcast of A has a whole product's cycle behind it, so
//! the load ports (two or three a cycle) never limit a block of 12 x 2 zmm (14 loads per 24
//! products). The block is then chosen for reuse, not for latency: 24 accumulators, the most
//! that leave room for B and A, load each word of B once per 12 rows and each word of A once
//! per 32 columns. `cargo bench --bench gemm` prints the implicit convs' GFLOP/s per kernel to
//! re-check [`FWD_ROWS`] and [`WG_ROWS`] on a given CPU (best of the runs, beside the medians),
//! and sweeps the rows of both blocks ([`BlockRows`]) to choose them by measurement.
//!
//! The block loops ([`forward_blocks`], [`weight_grad_blocks`]) also drive the portable
//! kernel's register block (`portable.rs`), so they run and are checked on any CPU.
//!
//! The padding pairs of the image rows (channels rounded up to 32 for AMX's tile rows) are zeros
//! the AMX tiles must multiply; here the loop over k stops at the image's own pairs.

use std::ops::Range;

use super::amx::{ForwardGeometry, WeightGradGeometry};
use super::layout::{Block, PackedB, Segment, NR};

/// Rows (output positions) of the forward's register block.
pub(super) const FWD_ROWS: usize = 12;
/// Rows (output channels) of the weight gradient's register block.
pub(super) const WG_ROWS: usize = 12;
/// Rows of the register blocks: output positions in the forward, output channels in the weight
/// gradient, each 1..=12. [`BlockRows::DEFAULT`] unless measuring another blocking
/// (`ImplicitConv::with_block_rows`, `cargo bench --bench gemm`): the sums are the same bits
/// whatever the rows, only the speed changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockRows {
    pub forward: usize,
    pub weight_grad: usize,
}

impl BlockRows {
    pub const DEFAULT: BlockRows = BlockRows { forward: FWD_ROWS, weight_grad: WG_ROWS };

    /// Whether both are 1..=12, the blocks the register kernels have.
    pub fn valid(self) -> bool {
        (1..=12).contains(&self.forward) && (1..=12).contains(&self.weight_grad)
    }
}

/// Pairs of k per cache block of the weight gradient: a block of B (32 channels) is at most
/// 16 KiB, half of Zen 4's L1.
const WG_KC: usize = 128;

/// The zmm register block: C[rows, 16 z columns] (+ C when `add`) = the sum over the segments
/// of A x B, on `VDPBF16PS`.
///
/// # Safety
/// The CPU has AVX512_BF16; the block's operands are readable and C writable.
pub(super) unsafe fn zmm_block(blk: &Block, segments: &[Segment]) {
    imp::block_any(blk, segments)
}

/// out[j, co] = sum over the packed taps `taps` (all 9 for a conv; a stride-2 conv's input
/// gradient runs a few at a time) and the first `live_pairs` channel pairs of the image rows
/// shifted by the tap x the packed weights, for the positions `range` and every output channel
/// (columns past `weights.n` in the last panel may be left unwritten), in register blocks each
/// handed to `block` ([`zmm_block`] or the portable one): per panel of 32 output channels (one
/// zmm where it holds 16 or fewer), `block_rows` positions at a time, one segment per tap
/// whose A starts `g.taps[tap]` image rows further on.
///
/// # Safety
/// `block` runs on this CPU; `image` and `out` have the lengths `ImplicitConv` gives them for
/// this geometry, `weights` has k = 9 * pairs, `live_pairs <= g.pairs`, `taps` within 0..9.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn forward_blocks(
    g: &ForwardGeometry,
    weights: &PackedB,
    live_pairs: usize,
    image: *const u32,
    out: *mut f32,
    (range, taps): (Range<usize>, Range<usize>),
    block_rows: usize,
    block: impl Fn(&Block, &[Segment]),
) {
    assert!((1..=12).contains(&block_rows), "register blocks of 1 to 12 rows");
    assert!(taps.end <= 9 && !taps.is_empty(), "packed taps {taps:?} of 9");
    let kp = weights.kp;
    debug_assert!(kp == 9 * g.pairs && live_pairs <= g.pairs && g.out_stride.is_multiple_of(NR));
    let none = Segment { a: std::ptr::null(), b: std::ptr::null() };
    for jp in 0..weights.n.div_ceil(NR) {
        let z = if weights.n - jp * NR > 16 { 2 } else { 1 };
        let panel = weights.data.as_ptr().add(jp * kp * NR);
        let mut j = range.start;
        while j < range.end {
            let rows = block_rows.min(range.end - j);
            let mut segments = [none; 9];
            for (segment, tap) in segments.iter_mut().zip(taps.clone()) {
                *segment = Segment {
                    a: image.wrapping_add((j + g.taps[tap]) * g.pairs),
                    b: panel.wrapping_add(tap * g.pairs * NR),
                };
            }
            let c = out.add(j * g.out_stride + jp * NR);
            let blk =
                Block { rows, z, kn: live_pairs, lda: g.pairs, ldb: NR, c, ldc: g.out_stride, add: false };
            block(&blk, &segments[..taps.len()]);
            j += rows;
        }
    }
}

/// acc[co, tap, c] += sum over position pairs p of dy's pair p of row co x the image's pair
/// at row `g.tap_rows[tap] + p` of channel c, for the taps `taps`, in register blocks each
/// handed to `block`: per tap, per 32 channels (one zmm where 16 or fewer are left), per
/// [`WG_KC`] position pairs (the block of B stays in L1 while the output channels pass),
/// `block_rows` output channels at a time.
///
/// # Safety
/// `block` runs on this CPU; `image`, `dy` and `acc` have the lengths `ImplicitConv` gives them
/// for this geometry.
pub(super) unsafe fn weight_grad_blocks(
    g: &WeightGradGeometry,
    image: *const u32,
    dy: *const u32,
    acc: *mut f32,
    taps: Range<usize>,
    block_rows: usize,
    block: impl Fn(&Block, &[Segment]),
) {
    assert!((1..=12).contains(&block_rows), "register blocks of 1 to 12 rows");
    let acc_row = 9 * g.channels;
    // equal cache blocks of k, none of them a sliver
    let k_blocks = g.dy_words.div_ceil(WG_KC).max(1);
    for tap in taps {
        let b_rows = image.add(g.tap_rows[tap] * g.channels);
        for c0 in (0..g.cin).step_by(NR) {
            let z = if g.cin - c0 > 16 { 2 } else { 1 };
            for kb in 0..k_blocks {
                let (k0, k1) = (g.dy_words * kb / k_blocks, g.dy_words * (kb + 1) / k_blocks);
                let mut co = 0;
                while co < g.cout {
                    let rows = block_rows.min(g.cout - co);
                    let segment =
                        Segment { a: dy.add(co * g.dy_words + k0), b: b_rows.add(k0 * g.channels + c0) };
                    let c = acc.add(co * acc_row + tap * g.channels + c0);
                    let blk = Block {
                        rows,
                        z,
                        kn: k1 - k0,
                        lda: g.dy_words,
                        ldb: g.channels,
                        c,
                        ldc: acc_row,
                        add: true,
                    };
                    block(&blk, &[segment]);
                    co += rows;
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod imp {
    #[cfg(not(feature = "zmm-model"))]
    use std::arch::x86_64::*;

    #[cfg(feature = "zmm-model")]
    use super::super::zmm_model::*;

    use super::super::layout::{Block, Segment};

    /// The register block for R rows and Z zmm of columns: R x Z accumulators, per pair of k Z
    /// loads of B and R broadcasts of A.
    #[inline]
    #[cfg_attr(not(feature = "zmm-model"), target_feature(enable = "avx512f,avx512bw,avx512bf16"))]
    unsafe fn block<const R: usize, const Z: usize>(blk: &Block, segments: &[Segment]) {
        let Block { kn, lda, ldb, c, ldc, add, .. } = *blk;
        let mut acc = [[_mm512_setzero_ps(); Z]; R];
        for s in segments {
            let (a, b) = (s.a, s.b);
            for p in 0..kn {
                let mut bv = [_mm512_setzero_si512(); Z];
                for (z, v) in bv.iter_mut().enumerate() {
                    *v = _mm512_loadu_si512(b.add(p * ldb + 16 * z).cast());
                }
                for (r, acc) in acc.iter_mut().enumerate() {
                    let av: __m512bh = std::mem::transmute(_mm512_set1_epi32(*a.add(r * lda + p) as i32));
                    for (acc, &bz) in acc.iter_mut().zip(&bv) {
                        *acc = _mm512_dpbf16_ps(*acc, av, std::mem::transmute::<__m512i, __m512bh>(bz));
                    }
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            for (z, &v) in acc.iter().enumerate() {
                let cp = c.add(r * ldc + 16 * z);
                let v = if add { _mm512_add_ps(v, _mm512_loadu_ps(cp)) } else { v };
                _mm512_storeu_ps(cp, v);
            }
        }
    }

    /// [`block`] for the block's rows (1..=12) and zmm of columns (1 or 2).
    ///
    /// # Safety
    /// The CPU has AVX512_BF16; the block's operands are readable and C writable.
    #[cfg_attr(not(feature = "zmm-model"), target_feature(enable = "avx512f,avx512bw,avx512bf16"))]
    pub unsafe fn block_any(blk: &Block, segments: &[Segment]) {
        macro_rules! dispatch {
            ($($r:literal)*) => {
                match (blk.rows, blk.z) {
                    $(($r, 1) => block::<$r, 1>(blk, segments),)*
                    $(($r, 2) => block::<$r, 2>(blk, segments),)*
                    _ => unreachable!("1..=12 rows of 1 or 2 zmm"),
                }
            };
        }
        dispatch!(1 2 3 4 5 6 7 8 9 10 11 12)
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod imp {
    //! Never called: `available()` is false off x86-64 and `ImplicitConv` checks it.
    use super::super::layout::{Block, Segment};

    pub unsafe fn block_any(_: &Block, _: &[Segment]) {
        unreachable!("bf16 kernels need x86-64")
    }
}

#[cfg(test)]
mod tests;
