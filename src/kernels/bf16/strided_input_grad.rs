//! The input gradient of a stride-2 3x3 downsample (padding 1, even sizes) as implicit GEMMs,
//! without im2col's columns or col2im's scatter: a sub-pixel split into four stride-1 convs of
//! dy, one per phase of dx.
//!
//! The downsample's output (oy, ox) reads input (2 oy + ky - 1, 2 ox + kx - 1), so dx's row
//! iy = 2p + r gets, for r = 0, tap row ky = 1 of dy row p, and for r = 1, ky = 0 of dy row
//! p + 1 and ky = 2 of dy row p (columns alike). Each phase (r, s) of dx (rows 2p + r, columns
//! 2q + s) is thus a conv of dy with 1, 2, 2 or 4 of the kernel's taps, each reading dy at
//! (p, q) or one row or column further: taps (1 + dy row offset, 1 + dy column offset) of a
//! same-size 3x3 conv on dy's padded grid, whose zero row and column past the end are the
//! outputs beyond the last row and column. The four phases' taps are nine in all, each tap of
//! the kernel once: they are packed as one kernel of nine, phase after phase, and each phase runs
//! its own range of them (`ImplicitConv::run_taps`), the same products as the conv's forward.

use std::ops::Range;

use super::implicit_conv::ImplicitConv;
use super::layout::PackedB;
use super::Kernel;

/// Per packed tap, phase after phase: (dy row offset, dy column offset, ky, kx). Along each
/// axis, dx's even rows (or columns) read tap 1 at offset 0, the odd ones tap 0 at offset 1 and
/// tap 2 at offset 0; a phase takes every pairing of its row taps with its column taps.
const PACKED_TAPS: [(usize, usize, usize, usize); 9] = [
    // phase (0, 0)
    (0, 0, 1, 1),
    // phase (0, 1)
    (0, 1, 1, 0),
    (0, 0, 1, 2),
    // phase (1, 0)
    (1, 0, 0, 1),
    (0, 0, 2, 1),
    // phase (1, 1)
    (1, 1, 0, 0),
    (1, 0, 0, 2),
    (0, 1, 2, 0),
    (0, 0, 2, 2),
];

/// The packed taps of dx's phase (r, s), at index 2 r + s.
const PHASE_TAPS: [Range<usize>; 4] = [0..1, 1..3, 3..5, 5..9];

/// The input gradient of one stride-2 3x3 conv of `cin` -> `cout` channels on `h` x `w`
/// images (see the module's note).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StridedInputGrad {
    /// The same-size conv on dy (`cout` -> `cin` channels, h/2 x w/2) whose products run the
    /// phases; the downsample's sizes are read off it.
    on_dy: ImplicitConv,
}

impl StridedInputGrad {
    /// The input gradient of the downsample `cin` -> `cout` on `h` x `w` (even) images on
    /// `kernel`, where the conv on dy runs implicitly ([`ImplicitConv::on`]: 8+ pairs of
    /// `cout`); not on AMX, which runs whole kernels of nine taps only.
    pub fn on(kernel: Kernel, cin: usize, cout: usize, h: usize, w: usize) -> Option<StridedInputGrad> {
        let even = h > 0 && w > 0 && h.is_multiple_of(2) && w.is_multiple_of(2);
        if kernel == Kernel::Amx || !even {
            return None;
        }
        let on_dy = ImplicitConv::on(kernel, cout, cin, h / 2, w / 2, 1)?;
        Some(StridedInputGrad { on_dy })
    }

    /// The implicit conv on dy (its register blocks, for tests and benchmarks).
    pub fn with_block_rows(self, block_rows: super::BlockRows) -> StridedInputGrad {
        StridedInputGrad { on_dy: self.on_dy.with_block_rows(block_rows) }
    }

    /// Packs the downsample's weights [cout, cin, 3, 3] (fp32) as the nine packed taps of the
    /// conv on dy: kernel[ci, co, t] = w[co, ci, ky(t), kx(t)], staged in `staging` (as many
    /// values as the weights).
    pub fn pack_weights<'a>(
        &self,
        weight: &[f32],
        staging: &mut [f32],
        buf: &'a mut Vec<u32>,
    ) -> PackedB<'a> {
        let (cout, cin, _, _) = self.on_dy.shape();
        assert_eq!(weight.len(), cout * cin * 9, "weights of a {cin} -> {cout} 3x3 conv");
        assert_eq!(staging.len(), weight.len());
        for (ci, to) in staging.chunks_exact_mut(cout * 9).enumerate() {
            for (co, taps) in to.chunks_exact_mut(9).enumerate() {
                let from = &weight[(co * cin + ci) * 9..][..9];
                for (t, &(_, _, ky, kx)) in taps.iter_mut().zip(&PACKED_TAPS) {
                    *t = from[ky * 3 + kx];
                }
            }
        }
        self.on_dy.pack_weights(staging, buf)
    }

    /// Packs dy [cout, h/2, w/2] (fp32) as the conv on dy's image.
    pub fn pack_output_grad<'a>(&self, dy: &[f32], buf: &'a mut Vec<u32>) -> &'a [u32] {
        self.on_dy.pack_image(dy, buf)
    }

    /// Elements of the products' buffer `out` of [`Self::run`].
    pub fn output_len(&self) -> usize {
        self.on_dy.output_len()
    }

    /// Elements of the staging buffer of [`Self::run`]: one phase of dx.
    pub fn phase_len(&self) -> usize {
        let (_, cin, ho, wo) = self.on_dy.shape();
        cin * ho * wo
    }

    /// dx [cin, h, w] = the input gradient for the packed dy, phase by phase: the products
    /// into `out` (on `threads` rayon tasks; start it on a 64-byte line), transposed back to
    /// channel planes in `staging`, then spread to the phase's rows and columns of dx.
    pub fn run(
        &self,
        weights: &PackedB,
        dy: &[u32],
        (out, staging): (&mut [f32], &mut [f32]),
        dx: &mut [f32],
        threads: usize,
    ) {
        let (_, cin, ho, wo) = self.on_dy.shape();
        let (h, w) = (2 * ho, 2 * wo);
        assert!(dx.len() == cin * h * w && staging.len() == self.phase_len());
        // dy's padded grid: rows of wo + 2 positions, the image from row 1, column 1
        let row = wo + 2;
        let shifts = PACKED_TAPS.map(|(dy_row, dy_col, _, _)| (1 + dy_row) * row + 1 + dy_col);
        for (phase, taps) in PHASE_TAPS.into_iter().enumerate() {
            let (r, s) = (phase / 2, phase % 2);
            self.on_dy.run_taps(weights, dy, out, threads, (shifts, taps));
            self.on_dy.unpad(out, None, staging);
            for (c, plane) in staging.chunks_exact(ho * wo).enumerate() {
                for (p, src) in plane.chunks_exact(wo).enumerate() {
                    let dst = &mut dx[(c * h + 2 * p + r) * w + s..][..w - s];
                    for (d, &v) in dst.iter_mut().step_by(2).zip(src) {
                        *d = v;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every tap of the kernel once, and each phase's taps those its rows and columns read.
    #[test]
    fn the_packed_taps_are_the_kernel_split_by_phase() {
        let mut seen = [false; 9];
        for (phase, taps) in PHASE_TAPS.iter().enumerate() {
            let (r, s) = (phase / 2, phase % 2);
            for &(oy, ox, ky, kx) in &PACKED_TAPS[taps.clone()] {
                // dx row 2p + r is read by output row p + oy at tap ky: 2 (p + oy) + ky - 1 = 2p + r
                assert_eq!(2 * oy + ky, r + 1, "phase {phase}: rows");
                assert_eq!(2 * ox + kx, s + 1, "phase {phase}: columns");
                assert!(!seen[ky * 3 + kx], "tap ({ky}, {kx}) twice");
                seen[ky * 3 + kx] = true;
            }
        }
        assert!(seen.iter().all(|&s| s));
        assert_eq!(PHASE_TAPS.iter().map(|t| t.len()).sum::<usize>(), 9);
    }
}
