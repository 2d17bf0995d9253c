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

use super::gemm::{interleave_row_pair, words, PAIR_STEP, ROW_STEP};
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
        out.fill(0);
        for c in 0..self.cin.div_ceil(2) {
            let lo = &x[2 * c * h * w..(2 * c + 1) * h * w];
            let hi = (2 * c + 1 < self.cin).then(|| &x[(2 * c + 1) * h * w..(2 * c + 2) * h * w]);
            let dst = &mut out[c * plane..(c + 1) * plane];
            for y in 0..h {
                let at = (y + 1) * row + 1;
                let (lo, hi) = (&lo[y * w..(y + 1) * w], hi.map(|hi| &hi[y * w..(y + 1) * w]));
                interleave_row_pair(lo, hi, &mut dst[at..at + w]);
            }
        }
        out
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
