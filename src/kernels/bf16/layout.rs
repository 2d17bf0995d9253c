//! The packed bf16 operand layout: the contract between the packing code (`gemm.rs`,
//! `implicit_conv.rs`) and the micro-kernels that read it (AVX512_BF16 in `gemm.rs` and
//! `implicit_avx512.rs`, AMX in `amx.rs`). See `gemm.rs` for how the pairs of k are laid out. Also [`Tr`], how an fp32 operand
//! is read, shared with the fp32 products in `kernels/gemm.rs`.

/// How an operand buffer is read: as stored (row-major [rows, cols]) or transposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tr {
    No,
    Yes,
}

/// Columns of a B panel (two zmm of fp32 accumulators).
pub(super) const NR: usize = 32;
/// Packed A holds a multiple of this many rows (an AMX tile's rows), the extra ones zero.
pub(super) const ROW_STEP: usize = 16;
/// Packed operands hold a multiple of this many pairs of k (an AMX tile row: 64 bytes), the
/// extra ones zero.
pub(super) const PAIR_STEP: usize = 16;

/// An fp32 operand as stored: row-major with row stride `ld`, read transposed when `tr` says.
#[derive(Debug, Clone, Copy)]
pub struct Src<'a> {
    pub data: &'a [f32],
    pub ld: usize,
    pub tr: Tr,
}

impl Src<'_> {
    /// Checks that element (r, c) of the operand `op(src)` of `rows` x `cols` is in bounds for all
    /// r, c (the packing loops then index without checks).
    pub(super) fn check(&self, rows: usize, cols: usize, what: &str) {
        let (sr, sc) = if self.tr == Tr::No { (rows, cols) } else { (cols, rows) };
        assert!(
            sr == 0 || sc == 0 || (sc <= self.ld && self.data.len() >= (sr - 1) * self.ld + sc),
            "bf16 matmul: operand {what} too small for [{rows}, {cols}] (stride {}, {} elements)",
            self.ld,
            self.data.len()
        );
    }
}

/// A packed into pairs: `m` rows of `kp` words (then zero rows up to a multiple of [`ROW_STEP`]).
#[derive(Debug, Clone, Copy)]
pub struct PackedA<'a> {
    pub(super) m: usize,
    pub(super) k: usize,
    pub(super) kp: usize,
    pub(super) data: &'a [u32],
}

impl PackedA<'_> {
    /// Rows (m) and depth (k) of the packed operand.
    pub fn dims(&self) -> (usize, usize) {
        (self.m, self.k)
    }
}

/// B packed into panels of [`NR`] columns.
#[derive(Debug, Clone, Copy)]
pub struct PackedB<'a> {
    pub(super) n: usize,
    pub(super) kp: usize,
    pub(super) data: &'a [u32],
}

/// A write mask of the first `n` (at most 16) lanes of a zmm register.
pub(super) fn mask(n: usize) -> u16 {
    if n >= 16 {
        u16::MAX
    } else {
        (1u16 << n) - 1
    }
}

/// One micro-kernel call: C[rows, cols] (+)= A[rows, 2kn] x B[2kn, cols], A's rows `lda` words
/// apart, B's pairs of k `NR` words apart, C's rows `ldc` floats apart; `add`: C + the product.
#[derive(Clone, Copy)]
pub(super) struct Tile {
    pub(super) kn: usize,
    pub(super) a: *const u32,
    pub(super) lda: usize,
    pub(super) b: *const u32,
    pub(super) c: *mut f32,
    pub(super) ldc: usize,
    pub(super) cols: usize,
    pub(super) add: bool,
}

/// One stretch of an implicit conv's register block (the zmm one in `implicit_avx512.rs`, the
/// portable one): A's row r at `a + r * lda` (one word per pair of k), B's pair p at
/// `b + p * ldb` (16 Z words).
#[derive(Clone, Copy)]
pub(super) struct Segment {
    pub(super) a: *const u32,
    pub(super) b: *const u32,
}

/// One register block: C[rows, 16 z columns] (+ C when `add`) = the sum over its segments of
/// A[rows, 2 kn] x B[2 kn, 16 z columns], C's row r at `c + r * ldc`.
#[derive(Clone, Copy)]
pub(super) struct Block {
    pub(super) rows: usize,
    pub(super) z: usize,
    pub(super) kn: usize,
    pub(super) lda: usize,
    pub(super) ldb: usize,
    pub(super) c: *mut f32,
    pub(super) ldc: usize,
    pub(super) add: bool,
}
