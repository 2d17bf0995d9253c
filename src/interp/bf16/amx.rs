//! The AMX-BF16 micro-kernel (Intel Sapphire Rapids and later): a 32 x 32 block of C lives in
//! four tile registers while two tiles of A (16 rows by 16 pairs of k each) and two of B
//! (16 pairs of k by 16 columns each) stream through four more. One `TDPBF16PS` does
//! 16 x 16 x 32 multiply-adds with fp32 accumulation, sixteen times a `VDPBF16PS`.
//!
//! The packed layouts of `gemm.rs` are already what a tile load wants: a row of packed A is
//! pairs of k, and a panel of packed B is rows of [`NR`] = 32 pair words, two tiles side by side.
//! Both are padded with zeros to whole tiles.
//!
//! Rust has no stable AMX intrinsics, so the tile instructions are inline assembly, and the CPU
//! check reads CPUID itself. Linux hands the tile registers' state to a process only when asked
//! (`arch_prctl(ARCH_REQ_XCOMP_PERM)`, once per process, before any tile instruction).

/// Whether this CPU has AMX-BF16 and the OS let this process use the tiles.
pub fn available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| super::available() && imp::cpu_has_amx_bf16() && imp::request_tile_state())
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
pub use imp::{block, implicit_conv, implicit_weight_grad};

/// How [`implicit_weight_grad`] finds its operands (see `implicit_conv.rs`).
pub struct WeightGradGeometry {
    /// Channel planes of the plain bf16 image (a multiple of 32).
    pub channels: usize,
    /// bf16 values per plane.
    pub plane: usize,
    /// Row length of the padded grid (w + 2).
    pub row: usize,
    /// Row stride of the sums (output channels rounded up to whole B panels).
    pub stride: usize,
}

/// How [`implicit_conv`] finds its operands (see `implicit_conv.rs`; sizes in words/elements).
pub struct ImplicitGeometry {
    /// Output channels (rows of the packed weights: whole tiles, padded with zeros).
    pub cout: usize,
    /// Channel pairs of the image (a multiple of 16).
    pub pairs: usize,
    /// Words per channel-pair plane of the padded image.
    pub plane: usize,
    /// Row length of the padded grid (w + 2).
    pub row: usize,
    /// Words per row of the packed weights (9 * pairs).
    pub depth: usize,
    /// Row stride of the padded output (a multiple of 32).
    pub positions: usize,
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod imp {
    use std::arch::asm;
    use std::arch::x86_64::*;
    use std::ops::Range;

    use super::super::gemm::{mask, PackedA, PackedB, NR, PAIR_STEP, ROW_STEP};
    use super::{ImplicitGeometry, WeightGradGeometry};

    /// Rows (and columns) of the C block one call computes: two tiles each way.
    const BLOCK: usize = 2 * ROW_STEP;
    const _: () = assert!(NR == BLOCK && PAIR_STEP == 16 && ROW_STEP == 16);

    pub fn cpu_has_amx_bf16() -> bool {
        // CPUID leaf 7, sub-leaf 0: EDX bit 22 = AMX-BF16, bit 24 = AMX-TILE
        let max_leaf = __cpuid(0).eax;
        if max_leaf < 7 {
            return false;
        }
        let edx = __cpuid_count(7, 0).edx;
        edx & (1 << 22) != 0 && edx & (1 << 24) != 0
    }

    /// Asks Linux for the tile data state (XFEATURE_XTILEDATA); false when refused (an old
    /// kernel, or a hypervisor that hides it).
    pub fn request_tile_state() -> bool {
        const SYS_ARCH_PRCTL: i64 = 158;
        const ARCH_REQ_XCOMP_PERM: i64 = 0x1023;
        const XFEATURE_XTILEDATA: i64 = 18;
        let ret: i64;
        // SAFETY: a plain system call; it reads no memory of ours and clobbers rcx and r11.
        unsafe {
            asm!(
                "syscall",
                inlateout("rax") SYS_ARCH_PRCTL => ret,
                in("rdi") ARCH_REQ_XCOMP_PERM,
                in("rsi") XFEATURE_XTILEDATA,
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack),
            );
        }
        ret == 0
    }

    /// The tile configuration (palette 1): every tile 16 rows of 64 bytes. tmm0-3 hold C,
    /// tmm4-5 A, tmm6-7 B.
    #[repr(C, align(64))]
    struct TileConfig([u8; 64]);

    impl TileConfig {
        fn all_full() -> TileConfig {
            let mut cfg = [0u8; 64];
            cfg[0] = 1; // palette
            for t in 0..8 {
                cfg[16 + 2 * t..18 + 2 * t].copy_from_slice(&64u16.to_le_bytes()); // bytes per row
                cfg[48 + t] = 16; // rows
            }
            TileConfig(cfg)
        }
    }

    /// A C block on its way out when it does not fill 32 x 32 of C.
    #[repr(C, align(64))]
    struct Spill([f32; BLOCK * BLOCK]);

    macro_rules! tile_load {
        ($tmm:literal, $ptr:expr, $stride:expr) => {
            asm!(concat!("tileloadd ", $tmm, ", [{p} + {s}*1]"), p = in(reg) $ptr, s = in(reg) $stride,
                options(nostack, readonly))
        };
    }
    macro_rules! tile_store {
        ($tmm:literal, $ptr:expr, $stride:expr) => {
            asm!(concat!("tilestored [{p} + {s}*1], ", $tmm), p = in(reg) $ptr, s = in(reg) $stride,
                options(nostack))
        };
    }
    macro_rules! tile_op {
        ($text:literal) => {
            asm!($text, options(nostack, nomem))
        };
    }

    /// C (+)= A x B over the B panels `panels`: for each panel (32 columns, all of k, in L1/L2),
    /// every 32-row block of A in turn.
    ///
    /// # Safety
    /// [`super::available`] is true; `c` with row stride `ldc` covers rows `0..a.m` and the
    /// columns of `panels` (up to `b.n`).
    #[target_feature(enable = "avx512f,avx512bw")]
    pub unsafe fn block(
        a: &PackedA,
        b: &PackedB,
        panels: Range<usize>,
        c: *mut f32,
        ldc: usize,
        accumulate: bool,
    ) {
        let (m, n, kp) = (a.m, b.n, a.kp);
        debug_assert!(kp % PAIR_STEP == 0 && a.data.len() >= m.next_multiple_of(ROW_STEP) * kp);
        let config = TileConfig::all_full();
        asm!("ldtilecfg [{}]", in(reg) config.0.as_ptr(), options(nostack, readonly));
        let (a_stride, b_stride, c_stride) = (kp * 4, NR * 4, ldc * 4);
        let mut spill = Spill([0.0; BLOCK * BLOCK]);
        for jp in panels {
            let j0 = jp * NR;
            let cols = NR.min(n - j0);
            let panel = b.data.as_ptr().add(jp * kp * NR);
            for i0 in (0..m).step_by(BLOCK) {
                let rows = BLOCK.min(m - i0);
                let a0 = a.data.as_ptr().add(i0 * kp);
                let a1 = a0.add(ROW_STEP * kp); // zero padding when rows <= 16: not read
                let cp = c.add(i0 * ldc + j0);
                // a whole 32 x 32 block of C goes straight between C and the tiles
                let whole = rows == BLOCK && cols == NR;
                if whole && accumulate {
                    tile_load!("tmm0", cp, c_stride);
                    tile_load!("tmm1", cp.add(16), c_stride);
                    tile_load!("tmm2", cp.add(16 * ldc), c_stride);
                    tile_load!("tmm3", cp.add(16 * ldc + 16), c_stride);
                } else {
                    tile_op!("tilezero tmm0");
                    tile_op!("tilezero tmm1");
                    tile_op!("tilezero tmm2");
                    tile_op!("tilezero tmm3");
                }
                // the second row of tiles is skipped where the block has 16 rows or fewer
                let two_rows = rows > ROW_STEP;
                for p0 in (0..kp).step_by(PAIR_STEP) {
                    let bp = panel.add(p0 * NR);
                    tile_load!("tmm6", bp, b_stride);
                    tile_load!("tmm7", bp.add(16), b_stride);
                    tile_load!("tmm4", a0.add(p0), a_stride);
                    tile_op!("tdpbf16ps tmm0, tmm4, tmm6");
                    tile_op!("tdpbf16ps tmm1, tmm4, tmm7");
                    if two_rows {
                        tile_load!("tmm5", a1.add(p0), a_stride);
                        tile_op!("tdpbf16ps tmm2, tmm5, tmm6");
                        tile_op!("tdpbf16ps tmm3, tmm5, tmm7");
                    }
                }
                if whole {
                    tile_store!("tmm0", cp, c_stride);
                    tile_store!("tmm1", cp.add(16), c_stride);
                    tile_store!("tmm2", cp.add(16 * ldc), c_stride);
                    tile_store!("tmm3", cp.add(16 * ldc + 16), c_stride);
                } else {
                    let s = spill.0.as_mut_ptr();
                    let s_stride = BLOCK * 4;
                    tile_store!("tmm0", s, s_stride);
                    tile_store!("tmm1", s.add(16), s_stride);
                    tile_store!("tmm2", s.add(16 * BLOCK), s_stride);
                    tile_store!("tmm3", s.add(16 * BLOCK + 16), s_stride);
                    let masks = [mask(cols), mask(cols.saturating_sub(16))];
                    for r in 0..rows {
                        for (h, &m) in masks.iter().enumerate() {
                            let v = _mm512_load_ps(s.add(r * BLOCK + 16 * h));
                            let dst = cp.add(r * ldc + 16 * h);
                            let v =
                                if accumulate { _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, dst)) } else { v };
                            _mm512_mask_storeu_ps(dst, m, v);
                        }
                    }
                }
            }
        }
        tile_op!("tilerelease");
    }

    /// out[co, j] = sum over taps and channel pairs of weights x the image shifted by the tap,
    /// for the positions `range` (whole blocks of 32) and every output channel.
    ///
    /// # Safety
    /// [`super::available`] is true; `weights`, `image` and `out` have the lengths
    /// `ImplicitConv` gives them for this geometry, and `range` lies within `g.positions`.
    pub unsafe fn implicit_conv(
        g: &ImplicitGeometry,
        weights: &[u32],
        image: &[u32],
        out: *mut f32,
        range: Range<usize>,
    ) {
        debug_assert!(
            g.pairs.is_multiple_of(PAIR_STEP)
                && range.end <= g.positions
                && range.start.is_multiple_of(BLOCK)
        );
        debug_assert!(weights.len() >= g.cout.next_multiple_of(ROW_STEP) * g.depth);
        debug_assert!(image.len() >= g.pairs * g.plane && g.positions + 2 * g.row + 2 <= g.plane);
        let config = TileConfig::all_full();
        asm!("ldtilecfg [{}]", in(reg) config.0.as_ptr(), options(nostack, readonly));
        let (a_stride, b_stride, o_stride) = (g.depth * 4, g.plane * 4, g.positions * 4);
        // Blocked so that A comes from L1: per 32 output channels and 16 channel pairs, the
        // weights of the nine taps (18 KiB) serve every position block, whose partial sums go
        // out to `out` (in L2) between channel blocks. The nine taps of one position block
        // read overlapping lines of the image, which stay in L1 too.
        for co0 in (0..g.cout).step_by(BLOCK) {
            let two_rows = g.cout - co0 > ROW_STEP;
            let a0 = weights.as_ptr().add(co0 * g.depth);
            let a1 = a0.wrapping_add(ROW_STEP * g.depth);
            for c0 in (0..g.pairs).step_by(PAIR_STEP) {
                for j0 in range.clone().step_by(BLOCK) {
                    let op = out.add(co0 * g.positions + j0);
                    let op1 = op.wrapping_add(ROW_STEP * g.positions);
                    if c0 == 0 {
                        tile_op!("tilezero tmm0");
                        tile_op!("tilezero tmm1");
                        tile_op!("tilezero tmm2");
                        tile_op!("tilezero tmm3");
                    } else {
                        tile_load!("tmm0", op, o_stride);
                        tile_load!("tmm1", op.add(16), o_stride);
                        if two_rows {
                            tile_load!("tmm2", op1, o_stride);
                            tile_load!("tmm3", op1.add(16), o_stride);
                        }
                    }
                    for tap in 0..9 {
                        let shift = tap / 3 * g.row + tap % 3;
                        let k = tap * g.pairs + c0;
                        let bp = image.as_ptr().add(c0 * g.plane + j0 + shift);
                        tile_load!("tmm6", bp, b_stride);
                        tile_load!("tmm7", bp.add(16), b_stride);
                        tile_load!("tmm4", a0.add(k), a_stride);
                        tile_op!("tdpbf16ps tmm0, tmm4, tmm6");
                        tile_op!("tdpbf16ps tmm1, tmm4, tmm7");
                        if two_rows {
                            tile_load!("tmm5", a1.add(k), a_stride);
                            tile_op!("tdpbf16ps tmm2, tmm5, tmm6");
                            tile_op!("tdpbf16ps tmm3, tmm5, tmm7");
                        }
                    }
                    tile_store!("tmm0", op, o_stride);
                    tile_store!("tmm1", op.add(16), o_stride);
                    if two_rows {
                        tile_store!("tmm2", op1, o_stride);
                        tile_store!("tmm3", op1.add(16), o_stride);
                    }
                }
            }
        }
        tile_op!("tilerelease");
    }

    /// acc[(tap, c), co] += sum over position pairs p of (image[c, 2p + shift(tap)],
    /// image[c, 2p + 1 + shift(tap)]) . dy's packed pair (p, co).
    ///
    /// # Safety
    /// [`super::available`] is true; `image` holds `g.channels` planes of `g.plane` bf16 values
    /// covering every position pair of `dy` at the largest shift; `acc` holds 9 * g.channels rows
    /// of `g.stride` >= the panels of `dy` times 32.
    pub unsafe fn implicit_weight_grad(
        g: &WeightGradGeometry,
        image: *const u16,
        dy: &PackedB,
        acc: *mut f32,
    ) {
        debug_assert!(g.channels.is_multiple_of(BLOCK) && dy.kp.is_multiple_of(PAIR_STEP));
        debug_assert!(2 * dy.kp + 2 * g.row + 2 <= g.plane && dy.n.div_ceil(NR) * NR <= g.stride);
        let config = TileConfig::all_full();
        asm!("ldtilecfg [{}]", in(reg) config.0.as_ptr(), options(nostack, readonly));
        let (a_stride, b_stride, c_stride) = (g.plane * 2, NR * 4, g.stride * 4);
        let kp = dy.kp;
        for jp in 0..dy.n.div_ceil(NR) {
            let panel = dy.data.as_ptr().add(jp * kp * NR);
            for tap in 0..9 {
                let shift = tap / 3 * g.row + tap % 3;
                for c0 in (0..g.channels).step_by(BLOCK) {
                    let cp = acc.add((tap * g.channels + c0) * g.stride + jp * NR);
                    tile_load!("tmm0", cp, c_stride);
                    tile_load!("tmm1", cp.add(16), c_stride);
                    tile_load!("tmm2", cp.add(16 * g.stride), c_stride);
                    tile_load!("tmm3", cp.add(16 * g.stride + 16), c_stride);
                    let a0 = image.add(c0 * g.plane + shift);
                    let a1 = a0.add(ROW_STEP * g.plane);
                    for p0 in (0..kp).step_by(PAIR_STEP) {
                        let bp = panel.add(p0 * NR);
                        tile_load!("tmm6", bp, b_stride);
                        tile_load!("tmm7", bp.add(16), b_stride);
                        tile_load!("tmm4", a0.add(2 * p0), a_stride);
                        tile_op!("tdpbf16ps tmm0, tmm4, tmm6");
                        tile_op!("tdpbf16ps tmm1, tmm4, tmm7");
                        tile_load!("tmm5", a1.add(2 * p0), a_stride);
                        tile_op!("tdpbf16ps tmm2, tmm5, tmm6");
                        tile_op!("tdpbf16ps tmm3, tmm5, tmm7");
                    }
                    tile_store!("tmm0", cp, c_stride);
                    tile_store!("tmm1", cp.add(16), c_stride);
                    tile_store!("tmm2", cp.add(16 * g.stride), c_stride);
                    tile_store!("tmm3", cp.add(16 * g.stride + 16), c_stride);
                }
            }
        }
        tile_op!("tilerelease");
    }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
mod imp {
    //! AMX needs x86-64 and Linux's permission call here; elsewhere the AVX-512 kernel runs.
    pub fn cpu_has_amx_bf16() -> bool {
        false
    }
    pub fn request_tile_state() -> bool {
        false
    }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
pub unsafe fn implicit_weight_grad(
    _: &WeightGradGeometry,
    _: *const u16,
    _: &super::gemm::PackedB,
    _: *mut f32,
) {
    unreachable!("the AMX kernel is never chosen where `available` is false")
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
pub unsafe fn implicit_conv(
    _: &ImplicitGeometry,
    _: &[u32],
    _: &[u32],
    _: *mut f32,
    _: std::ops::Range<usize>,
) {
    unreachable!("the AMX kernel is never chosen where `available` is false")
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
pub unsafe fn block(
    _: &super::gemm::PackedA,
    _: &super::gemm::PackedB,
    _: std::ops::Range<usize>,
    _: *mut f32,
    _: usize,
    _: bool,
) {
    unreachable!("the AMX kernel is never chosen where `available` is false")
}
