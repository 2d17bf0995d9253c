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

/// How [`implicit_conv`] finds its operands (see `implicit_conv.rs`; sizes in words/elements).
pub struct ForwardGeometry {
    /// Channel pairs per image row (a multiple of 16).
    pub pairs: usize,
    /// Per tap, the image row that output position 0 reads: output j reads row j + `taps[tap]`
    /// (a shift on the padded grid; for a strided conv, a shift inside the tap's phase grid).
    pub taps: [usize; 9],
    /// Row stride of the output (output channels rounded up to whole panels).
    pub out_stride: usize,
}

/// How [`implicit_weight_grad`] finds its operands (see `implicit_conv.rs`).
pub struct WeightGradGeometry {
    /// Output channels (rows of dy, rounded up to 32 with zero rows).
    pub cout: usize,
    /// Input channels (columns of the image rows before their zero padding).
    pub cin: usize,
    /// Channel columns of the image rows (a multiple of 32).
    pub channels: usize,
    /// Per tap, the image row holding the position pair that dy's pair 0 meets: pair p meets
    /// row `tap_rows[tap] + p` (the copy of the right parity, and phase, shifted by the tap).
    pub tap_rows: [usize; 9],
    /// Words per row of dy (a multiple of 16).
    pub dy_words: usize,
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod imp {
    use std::arch::asm;
    use std::arch::x86_64::*;
    use std::ops::Range;

    use super::super::layout::{mask, PackedA, PackedB, NR, PAIR_STEP, ROW_STEP};
    use super::{ForwardGeometry, WeightGradGeometry};

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
        debug_assert!(kp.is_multiple_of(PAIR_STEP) && a.data.len() >= m.next_multiple_of(ROW_STEP) * kp);
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

    /// out[j, co] = sum over taps and channel pairs of the image rows shifted by the tap x the
    /// packed weights, for the positions `range` (whole blocks of 32) and every output channel.
    ///
    /// # Safety
    /// [`super::available`] is true; `image` and `out` are 64-byte aligned and have the lengths
    /// `ImplicitConv` gives them for this geometry, `weights` has k = 9 * pairs.
    pub unsafe fn implicit_conv(
        g: &ForwardGeometry,
        weights: &PackedB,
        image: *const u32,
        out: *mut f32,
        range: Range<usize>,
    ) {
        debug_assert!(g.pairs.is_multiple_of(PAIR_STEP) && weights.kp == 9 * g.pairs);
        debug_assert!(range.start.is_multiple_of(BLOCK) && g.out_stride.is_multiple_of(NR));
        let config = TileConfig::all_full();
        asm!("ldtilecfg [{}]", in(reg) config.0.as_ptr(), options(nostack, readonly));
        let (a_stride, b_stride, c_stride) = (g.pairs * 4, NR * 4, g.out_stride * 4);
        let kp = weights.kp;
        for j0 in range.step_by(BLOCK) {
            for jp in 0..weights.n.div_ceil(NR) {
                tile_op!("tilezero tmm0");
                tile_op!("tilezero tmm1");
                tile_op!("tilezero tmm2");
                tile_op!("tilezero tmm3");
                // a panel of 16 channels or fewer needs only its first B tile
                let two_cols = weights.n - jp * NR > 16;
                let panel = weights.data.as_ptr().add(jp * kp * NR);
                for tap in 0..9 {
                    let a0 = image.add((j0 + g.taps[tap]) * g.pairs);
                    let a1 = a0.add(ROW_STEP * g.pairs);
                    for c0 in (0..g.pairs).step_by(PAIR_STEP) {
                        let bp = panel.add((tap * g.pairs + c0) * NR);
                        tile_load!("tmm4", a0.add(c0), a_stride);
                        tile_load!("tmm6", bp, b_stride);
                        tile_op!("tdpbf16ps tmm0, tmm4, tmm6");
                        tile_load!("tmm5", a1.add(c0), a_stride);
                        tile_op!("tdpbf16ps tmm2, tmm5, tmm6");
                        if two_cols {
                            tile_load!("tmm7", bp.add(16), b_stride);
                            tile_op!("tdpbf16ps tmm1, tmm4, tmm7");
                            tile_op!("tdpbf16ps tmm3, tmm5, tmm7");
                        }
                    }
                }
                let op = out.add(j0 * g.out_stride + jp * NR);
                tile_store!("tmm0", op, c_stride);
                tile_store!("tmm2", op.add(ROW_STEP * g.out_stride), c_stride);
                if two_cols {
                    tile_store!("tmm1", op.add(16), c_stride);
                    tile_store!("tmm3", op.add(ROW_STEP * g.out_stride + 16), c_stride);
                }
            }
        }
        tile_op!("tilerelease");
    }

    /// acc[co, tap, c] += sum over position pairs p of dy's pair p of row co x the image's pair
    /// at positions (2p + shift(tap), 2p + 1 + shift(tap)) of channel c, for the taps `taps`.
    ///
    /// # Safety
    /// [`super::available`] is true; `image`, `dy` and `acc` are 64-byte aligned and have the
    /// lengths `ImplicitConv` gives them for this geometry.
    pub unsafe fn implicit_weight_grad(
        g: &WeightGradGeometry,
        image: *const u32,
        dy: *const u32,
        acc: *mut f32,
        taps: Range<usize>,
    ) {
        debug_assert!(g.channels.is_multiple_of(BLOCK) && g.dy_words.is_multiple_of(PAIR_STEP));
        let config = TileConfig::all_full();
        asm!("ldtilecfg [{}]", in(reg) config.0.as_ptr(), options(nostack, readonly));
        let acc_row = 9 * g.channels;
        let (a_stride, b_stride, c_stride) = (g.dy_words * 4, g.channels * 4, acc_row * 4);
        for tap in taps {
            let b_rows = image.add(g.tap_rows[tap] * g.channels);
            for c0 in (0..g.channels).step_by(BLOCK) {
                // blocks with 16 channels or 16 output channels or fewer skip the other half
                let two_cols = g.cin - c0 > ROW_STEP;
                for co0 in (0..g.cout).step_by(BLOCK) {
                    let two_rows = g.cout - co0 > ROW_STEP;
                    let cp = acc.add(co0 * acc_row + tap * g.channels + c0);
                    tile_load!("tmm0", cp, c_stride);
                    tile_load!("tmm1", cp.add(16), c_stride);
                    tile_load!("tmm2", cp.add(ROW_STEP * acc_row), c_stride);
                    tile_load!("tmm3", cp.add(ROW_STEP * acc_row + 16), c_stride);
                    let a0 = dy.add(co0 * g.dy_words);
                    let a1 = a0.add(ROW_STEP * g.dy_words);
                    for p0 in (0..g.dy_words).step_by(PAIR_STEP) {
                        let bp = b_rows.add(p0 * g.channels + c0);
                        tile_load!("tmm4", a0.add(p0), a_stride);
                        tile_load!("tmm6", bp, b_stride);
                        tile_op!("tdpbf16ps tmm0, tmm4, tmm6");
                        if two_cols {
                            tile_load!("tmm7", bp.add(16), b_stride);
                            tile_op!("tdpbf16ps tmm1, tmm4, tmm7");
                        }
                        if two_rows {
                            tile_load!("tmm5", a1.add(p0), a_stride);
                            tile_op!("tdpbf16ps tmm2, tmm5, tmm6");
                            if two_cols {
                                tile_op!("tdpbf16ps tmm3, tmm5, tmm7");
                            }
                        }
                    }
                    tile_store!("tmm0", cp, c_stride);
                    tile_store!("tmm1", cp.add(16), c_stride);
                    tile_store!("tmm2", cp.add(ROW_STEP * acc_row), c_stride);
                    tile_store!("tmm3", cp.add(ROW_STEP * acc_row + 16), c_stride);
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

/// # Safety
/// Never called: the AMX kernel is chosen only where [`available`] is true, never on this target.
#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
pub unsafe fn implicit_weight_grad(
    _: &WeightGradGeometry,
    _: *const u32,
    _: *const u32,
    _: *mut f32,
    _: std::ops::Range<usize>,
) {
    unreachable!("the AMX kernel is never chosen where `available` is false")
}

/// # Safety
/// Never called: the AMX kernel is chosen only where [`available`] is true, never on this target.
#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
pub unsafe fn implicit_conv(
    _: &ForwardGeometry,
    _: &super::layout::PackedB,
    _: *const u32,
    _: *mut f32,
    _: std::ops::Range<usize>,
) {
    unreachable!("the AMX kernel is never chosen where `available` is false")
}

/// # Safety
/// Never called: the AMX kernel is chosen only where [`available`] is true, never on this target.
#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
pub unsafe fn block(
    _: &super::layout::PackedA,
    _: &super::layout::PackedB,
    _: std::ops::Range<usize>,
    _: *mut f32,
    _: usize,
    _: bool,
) {
    unreachable!("the AMX kernel is never chosen where `available` is false")
}
