//! 3x3 same-size convolutions in bf16 straight from the image on AMX tiles ("implicit GEMM"):
//! no column matrix is made, converted or packed.
//!
//! On a padded, flattened grid (rows of W + 2 positions, a zero row above and below and a zero
//! column each side), output position j = y (W + 2) + x reads input position
//! j + ky (W + 2) + kx for tap (ky, kx): each tap is the whole image shifted by a constant. The
//! image is stored once in bf16 with its channels in pairs (a word holds channels 2c and 2c+1
//! at one position), so 16 channel pairs at one tap and 16 consecutive positions form a B tile:
//! 16 rows of 64 bytes, one channel-pair plane apart. The weights are packed with k ordered
//! (tap, channel pair), so the matching A tile holds the same 16 channel pairs at that tap.
//! Outputs on the padding columns (x >= W) are computed and dropped: W / (W + 2) of the work is
//! useful (28x28: 93 %, 7x7: 78 %), against im2col's copy, conversion and packing of every
//! column, which cost more than the products on AMX.
//!
//! The weight gradient sums over positions instead: dW^T[(tap, c), co] = sum over j of
//! x[c, j + shift(tap)] dy[co, j]. Its left operand, 16 channels at one tap by 16 pairs of
//! positions, is the image stored plainly in bf16 (one plane per channel) and read from the
//! tap's shift: consecutive positions are already the pairs a tile row wants. Its right operand
//! is dy on the padded grid (zero on the padding columns, so they add nothing), transposed and
//! packed like any B.

use super::gemm::{convert_plain, interleave_row_pair, words, PackedB, NR, PAIR_STEP, ROW_STEP};
use super::SendPtr;

/// Positions per C block: two tiles of 16.
const POSITION_BLOCK: usize = 32;

/// The sizes of one 3x3, stride-1, padding-1 convolution of one image on the padded grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImplicitConv {
    cin: usize,
    cout: usize,
    h: usize,
    w: usize,
}

impl ImplicitConv {
    /// The implicit convolution for `cin` -> `cout` channels on `h` x `w` images, where it
    /// applies and pays: AMX present, and at least 8 channel pairs (fewer are padded with zeros
    /// to a tile's 16, and with one or a few input channels im2col's columns are cheap anyway).
    pub fn new(cin: usize, cout: usize, h: usize, w: usize) -> Option<ImplicitConv> {
        let worth_it = cin.div_ceil(2) >= PAIR_STEP / 2 && h > 0 && w > 0 && cout > 0;
        (worth_it && super::amx::available()).then_some(ImplicitConv { cin, cout, h, w })
    }

    /// Channel pairs, padded to whole tiles.
    fn pairs(&self) -> usize {
        self.cin.div_ceil(2).next_multiple_of(PAIR_STEP)
    }
    /// Row length of the padded grid.
    fn row(&self) -> usize {
        self.w + 2
    }
    /// Words per word-plane of the padded image: the grid plus room for the last position
    /// block's overshoot at the largest tap offset.
    fn plane(&self) -> usize {
        ((self.h + 2) * self.row() + POSITION_BLOCK + 16).next_multiple_of(16)
    }
    /// Output positions computed (all of the grid's rows 1..=h, padding columns included),
    /// rounded up to whole blocks: the row stride of the padded output.
    fn positions(&self) -> usize {
        (self.h * self.row()).next_multiple_of(POSITION_BLOCK)
    }
    /// Words per row of the packed weights.
    fn depth(&self) -> usize {
        9 * self.pairs()
    }
    /// Rows of the packed weights and of the padded output (whole tiles).
    fn out_rows(&self) -> usize {
        self.cout.next_multiple_of(ROW_STEP)
    }

    fn weights_len(&self) -> usize {
        self.out_rows() * self.depth()
    }
    fn image_len(&self) -> usize {
        self.pairs() * self.plane()
    }
    /// Elements of the padded output buffer.
    pub fn output_len(&self) -> usize {
        self.out_rows() * self.positions()
    }

    /// Packs weights [cout, cin, 3, 3] (fp32) into `buf`: row co, word tap * pairs + c = the
    /// bf16 pair (w[co, 2c, tap], w[co, 2c + 1, tap]); padding rows and pairs zero.
    pub fn pack_weights<'a>(&self, weight: &[f32], buf: &'a mut Vec<u32>) -> &'a [u32] {
        let (cin, pairs, depth) = (self.cin, self.pairs(), self.depth());
        assert_eq!(weight.len(), self.cout * cin * 9, "weights of a {cin} -> {} 3x3 conv", self.cout);
        let out = words(buf, self.weights_len());
        out.fill(0);
        for (co, row) in out.chunks_exact_mut(depth).take(self.cout).enumerate() {
            let w = &weight[co * cin * 9..(co + 1) * cin * 9];
            for tap in 0..9 {
                for c in 0..cin.div_ceil(2) {
                    let lo = w[2 * c * 9 + tap];
                    let hi = if 2 * c + 1 < cin { w[(2 * c + 1) * 9 + tap] } else { 0.0 };
                    row[tap * pairs + c] = super::to_bf16(lo) as u32 | (super::to_bf16(hi) as u32) << 16;
                }
            }
        }
        out
    }

    /// Packs one image [cin, h, w] (fp32) into `buf`, on the padded grid in channel pairs.
    pub fn pack_image<'a>(&self, x: &[f32], buf: &'a mut Vec<u32>) -> &'a [u32] {
        let (h, w, row, plane) = (self.h, self.w, self.row(), self.plane());
        assert_eq!(x.len(), self.cin * h * w, "an image of {} channels of {h}x{w}", self.cin);
        let out = words(buf, self.image_len());
        let given = self.cin.div_ceil(2);
        out[given * plane..].fill(0);
        for c in 0..given {
            let lo = &x[2 * c * h * w..(2 * c + 1) * h * w];
            let hi = (2 * c + 1 < self.cin).then(|| &x[(2 * c + 1) * h * w..(2 * c + 2) * h * w]);
            let dst = &mut out[c * plane..(c + 1) * plane];
            self.zero_padding(dst, 0);
            for y in 0..h {
                let at = (y + 1) * row + 1;
                let (lo, hi) = (&lo[y * w..(y + 1) * w], hi.map(|hi| &hi[y * w..(y + 1) * w]));
                interleave_row_pair(lo, hi, &mut dst[at..at + w]);
            }
        }
        out
    }

    /// Zeroes everything of a plane on the padded grid but the image's positions (which the
    /// caller writes): one pass over the padding instead of two over the plane.
    fn zero_padding<W: Copy>(&self, plane: &mut [W], zero: W) {
        let mut at = 0;
        for y in 0..self.h {
            let start = (y + 1) * self.row() + 1;
            plane[at..start].fill(zero);
            at = start + self.w;
        }
        plane[at..].fill(zero);
    }

    /// out (padded, [`Self::output_len`]) = the convolution of the packed image by the packed
    /// weights, the position blocks split over `threads` rayon tasks.
    pub fn run(&self, weights: &[u32], image: &[u32], out: &mut [f32], threads: usize) {
        assert!(weights.len() == self.weights_len() && image.len() == self.image_len());
        assert!(out.len() == self.output_len());
        let blocks = self.positions() / POSITION_BLOCK;
        let tasks = threads.clamp(1, blocks);
        let geometry = super::amx::ImplicitGeometry {
            cout: self.cout,
            pairs: self.pairs(),
            plane: self.plane(),
            row: self.row(),
            depth: self.depth(),
            positions: self.positions(),
        };
        let out = SendPtr(out.as_mut_ptr());
        let task = |t: usize| {
            let range = blocks * t / tasks * POSITION_BLOCK..blocks * (t + 1) / tasks * POSITION_BLOCK;
            // SAFETY: AMX is available (checked in `new`); the buffers have the lengths asserted
            // above, which cover every tile read and write (see `plane` and `positions`); tasks
            // write disjoint position ranges.
            unsafe { super::amx::implicit_conv(&geometry, weights, image, out.get(), range) }
        };
        if tasks == 1 {
            task(0);
        } else {
            use rayon::prelude::*;
            (0..tasks).into_par_iter().for_each(task);
        }
    }

    /// Channels of the plain image: whole pairs of tiles (two A tiles per block), zero planes past cin.
    fn plain_channels(&self) -> usize {
        self.cin.next_multiple_of(2 * ROW_STEP)
    }
    /// bf16 values per channel plane of the plain image: every position a tile reads at the
    /// largest shift, rounded to whole words.
    fn plain_plane(&self) -> usize {
        (self.positions() + 2 * self.row() + 2 + 2 * PAIR_STEP).next_multiple_of(2 * PAIR_STEP)
    }
    /// Row stride of the weight-gradient sums: whole B panels.
    fn grad_stride(&self) -> usize {
        self.cout.next_multiple_of(NR)
    }
    /// Elements of the weight-gradient sums [`Self::add_weight_grad`] adds to.
    pub fn weight_grad_len(&self) -> usize {
        9 * self.plain_channels() * self.grad_stride()
    }

    /// Packs one image [cin, h, w] (fp32) into `buf` as plain bf16 planes on the padded grid.
    pub fn pack_image_plain<'a>(&self, x: &[f32], buf: &'a mut Vec<u32>) -> &'a [u32] {
        let (h, w, row, plane) = (self.h, self.w, self.row(), self.plain_plane());
        assert_eq!(x.len(), self.cin * h * w, "an image of {} channels of {h}x{w}", self.cin);
        let out = words(buf, self.plain_channels() * plane / 2);
        // SAFETY: u16 halves of the u32 words: same allocation, alignment 2 <= 4, twice the count
        let halves = unsafe { std::slice::from_raw_parts_mut(out.as_mut_ptr().cast::<u16>(), out.len() * 2) };
        halves[self.cin * plane..].fill(0);
        for (c, src) in x.chunks_exact(h * w).enumerate() {
            self.zero_padding(&mut halves[c * plane..(c + 1) * plane], 0);
            for (y, src) in src.chunks_exact(w).enumerate() {
                let at = c * plane + (y + 1) * row + 1;
                convert_plain(src, &mut halves[at..at + w]);
            }
        }
        out
    }

    /// Packs dy [cout, h, w] as the right operand of the weight gradient: pairs of consecutive
    /// positions on the padded grid (zero on the padding) are one word of a plain bf16 row, so
    /// the packing is dy converted to rows (`rows`), then those words transposed into panels
    /// (`buf`).
    pub fn pack_output_grad<'a>(
        &self,
        dy: &[f32],
        rows: &mut Vec<u32>,
        buf: &'a mut Vec<u32>,
    ) -> PackedB<'a> {
        let (h, w, row, cout, positions) = (self.h, self.w, self.row(), self.cout, self.positions());
        assert_eq!(dy.len(), cout * h * w, "a gradient of {cout} channels of {h}x{w}");
        let kp = positions / 2;
        let plain = words(rows, cout * kp);
        plain.fill(0);
        // SAFETY: u16 halves of the u32 words: same allocation, alignment 2 <= 4, twice the count
        let halves =
            unsafe { std::slice::from_raw_parts_mut(plain.as_mut_ptr().cast::<u16>(), plain.len() * 2) };
        for (co, plane) in dy.chunks_exact(h * w).enumerate() {
            for (y, src) in plane.chunks_exact(w).enumerate() {
                let at = co * positions + y * row;
                convert_plain(src, &mut halves[at..at + w]);
            }
        }
        let panels = cout.div_ceil(NR);
        let out = words(buf, panels * kp * NR);
        // word (p, j) of panel jp = word p of row jp * NR + j, in blocks that stay in L1
        const P_BLOCK: usize = 64;
        for (jp, panel) in out.chunks_exact_mut(kp * NR).enumerate() {
            let cols = NR.min(cout - jp * NR);
            for p0 in (0..kp).step_by(P_BLOCK) {
                let p1 = (p0 + P_BLOCK).min(kp);
                for j in 0..NR {
                    if j < cols {
                        let src = &plain[(jp * NR + j) * kp..][p0..p1];
                        for (p, &v) in (p0..p1).zip(src) {
                            panel[p * NR + j] = v;
                        }
                    } else {
                        (p0..p1).for_each(|p| panel[p * NR + j] = 0);
                    }
                }
            }
        }
        PackedB { n: cout, kp, data: out }
    }

    /// acc[(tap, c), co] += the weight gradient of one image (see [`Self::weight_grad_into`]).
    pub fn add_weight_grad(&self, image: &[u32], dy: &PackedB, acc: &mut [f32]) {
        assert!(image.len() == self.plain_channels() * self.plain_plane() / 2);
        assert!(acc.len() == self.weight_grad_len());
        let geometry = super::amx::WeightGradGeometry {
            channels: self.plain_channels(),
            plane: self.plain_plane(),
            row: self.row(),
            stride: self.grad_stride(),
        };
        // SAFETY: AMX is available (checked in `new`); the buffers have the lengths asserted
        // above and `dy` was packed by `pack_output_grad` for this geometry.
        unsafe { super::amx::implicit_weight_grad(&geometry, image.as_ptr().cast(), dy, acc.as_mut_ptr()) }
    }

    /// dweight [cout, cin, 3, 3] += the sums `acc` of [`Self::add_weight_grad`].
    pub fn add_sums_to_weight_grad(&self, acc: &[f32], dweight: &mut [f32]) {
        let (cin, stride, channels) = (self.cin, self.grad_stride(), self.plain_channels());
        assert!(acc.len() == self.weight_grad_len() && dweight.len() == self.cout * cin * 9);
        for (co, dw) in dweight.chunks_exact_mut(cin * 9).enumerate() {
            for (c, taps) in dw.chunks_exact_mut(9).enumerate() {
                for (tap, d) in taps.iter_mut().enumerate() {
                    *d += acc[(tap * channels + c) * stride + co];
                }
            }
        }
    }

    /// y [cout, h, w] = the valid positions of the padded output, plus `bias` when given.
    pub fn unpad(&self, out: &[f32], bias: Option<&[f32]>, y: &mut [f32]) {
        let (h, w, row, stride) = (self.h, self.w, self.row(), self.positions());
        for (co, plane) in y.chunks_exact_mut(h * w).take(self.cout).enumerate() {
            let b = bias.map_or(0.0, |b| b[co]);
            for (yy, dst) in plane.chunks_exact_mut(w).enumerate() {
                let src = &out[co * stride + yy * row..co * stride + yy * row + w];
                dst.iter_mut().zip(src).for_each(|(d, &s)| *d = s + b);
            }
        }
    }
}
