//! 3x3 same-size convolutions in bf16 straight from the image ("implicit GEMM") on AMX tiles,
//! on AVX512_BF16 (`implicit_avx512.rs`, reading the same layouts) or on the portable reference
//! kernel (`portable.rs`): no column matrix is made, converted or packed.
//!
//! On a padded, flattened grid (rows of W + 2 positions, a zero row above and below and a zero
//! column each side), output position j = y (W + 2) + x reads input position
//! j + shift(tap), shift = ky (W + 2) + kx: each tap is the whole image shifted by a constant.
//! Outputs on the padding columns (x >= W) are computed and dropped: W / (W + 2) of the work is
//! useful (28x28: 93 %, 7x7: 78 %), against im2col's copy, conversion and packing of every
//! column, which cost more than the products on AMX.
//!
//! Every tile load reads whole, aligned 64-byte lines: a tile row that straddles two lines
//! makes `TILELOADD` about three times slower (measured: 2.5 against 0.87 TFLOP/s a core in a
//! loop of four loads and four products). So the shifts move by whole rows of the layouts:
//! - Forward (and dx, the flipped conv): C[j, co] = sum over (tap, c) of x[j + shift, c] w[co, c, tap].
//!   A is the image channels-last on the grid, a row per position holding its channel pairs, so
//!   the tile of 16 positions at a tap starts `shift` rows further on. B is the weights, packed
//!   like any B with k ordered (tap, channel pair). C comes out position-major and is transposed
//!   back to channel planes as it is unpadded.
//! - Weight gradient: C[co, (tap, c)] = sum over j of dy[co, j] x[j + shift, c]. A is dy in plain
//!   bf16 rows on the grid (zero on the padding columns, so they add nothing): consecutive
//!   positions are already the pairs a tile row holds. B pairs positions (2p + shift,
//!   2p + 1 + shift) for 16 channels: the image stored twice, position pairs starting at even
//!   and at odd positions, so any shift is whole rows of one of the two.

use super::gemm::{convert_plain, words};
use super::implicit_avx512::BlockRows;
use super::layout::{Block, PackedB, Segment, NR, PAIR_STEP, ROW_STEP};
use super::portable::pair;
use super::transpose;
use super::{run_tasks, Kernel, SendPtr};

/// Positions per C block: two tiles of 16.
const POSITION_BLOCK: usize = 2 * ROW_STEP;

/// The sizes of one 3x3, padding-1 convolution of one image: stride 1 (same size), or stride
/// 2 on even sizes (a downsample to h/2 x w/2).
///
/// A stride-2 conv reads every other position, so the image is split into four phase grids,
/// phase (a, b) holding the padded image's positions (2i + a, 2j + b) on rows of w/2 + 1: tap
/// (ky, kx) of output (y, x) is then position (y + ky/2, x + kx/2) of phase (ky%2, kx%2), a
/// constant shift of one phase grid, and the products run as for stride 1 with each tap's A
/// starting in its phase (one output column in w/2 + 1 is computed and dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImplicitConv {
    kernel: Kernel,
    cin: usize,
    cout: usize,
    h: usize,
    w: usize,
    stride: usize,
    /// The register blocks of the AVX512_BF16 and portable kernels.
    block_rows: BlockRows,
}

impl ImplicitConv {
    /// The implicit convolution for `cin` -> `cout` channels on `h` x `w` images on
    /// [`Kernel::best`] where [`Kernel::implicit_convs_by_default`] says so and where it applies
    /// and pays: bf16 products available, and at least 8
    /// channel pairs (fewer are padded with zeros to a tile's 16, and with one or a few input
    /// channels im2col's columns are cheap anyway).
    pub fn new(cin: usize, cout: usize, h: usize, w: usize, stride: usize) -> Option<ImplicitConv> {
        let kernel = Kernel::best();
        if !kernel.implicit_convs_by_default() {
            return None;
        }
        Self::on(kernel, cin, cout, h, w, stride)
    }

    /// [`Self::new`] on a given kernel (which this CPU must run; for tests and benchmarks that
    /// compare kernels). `MDC_BF16_KERNEL=avx512-im2col` (or `amx-im2col`) turns them off.
    /// Stride 2 needs even sizes, and is not offered on AMX, where it has not yet run.
    pub fn on(
        kernel: Kernel,
        cin: usize,
        cout: usize,
        h: usize,
        w: usize,
        stride: usize,
    ) -> Option<ImplicitConv> {
        let worth_it = cin.div_ceil(2) >= PAIR_STEP / 2 && h > 0 && w > 0 && cout > 0;
        let downsample = stride == 2 && h.is_multiple_of(2) && w.is_multiple_of(2) && kernel != Kernel::Amx;
        let runs = kernel.runs_here() && !Kernel::im2col_forced();
        (worth_it && (stride == 1 || downsample) && runs).then_some(ImplicitConv {
            kernel,
            cin,
            cout,
            h,
            w,
            stride,
            block_rows: BlockRows::DEFAULT,
        })
    }

    /// The kernel that runs the products.
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// (input channels, output channels, input height, input width).
    pub(super) fn shape(&self) -> (usize, usize, usize, usize) {
        (self.cin, self.cout, self.h, self.w)
    }

    /// The register block of the AVX512_BF16 or portable kernel; None on AMX, which multiplies
    /// whole tiles in `amx.rs` instead.
    fn register_block(&self) -> Option<unsafe fn(&Block, &[Segment])> {
        match self.kernel {
            Kernel::Avx512 => Some(super::implicit_avx512::zmm_block),
            Kernel::Portable => Some(super::portable::implicit_block),
            Kernel::Amx => None,
        }
    }

    /// This conv with register blocks of other rows on the AVX512_BF16 and portable kernels
    /// (AMX ignores them): to choose the blocking by measurement (`cargo bench --bench gemm`).
    /// The results are the same bits whatever the rows.
    pub fn with_block_rows(self, block_rows: BlockRows) -> ImplicitConv {
        assert!(block_rows.valid(), "register blocks of 1 to 12 rows, not {block_rows:?}");
        ImplicitConv { block_rows, ..self }
    }

    /// Channel pairs, padded to whole tile rows.
    fn pairs(&self) -> usize {
        self.cin.div_ceil(2).next_multiple_of(PAIR_STEP)
    }
    /// Output rows and columns.
    fn out_size(&self) -> (usize, usize) {
        (self.h / self.stride, self.w / self.stride)
    }
    /// Row length of the grids: the padded image (w + 2), or each phase grid (w/2 + 1); the
    /// output positions are computed on the same rows.
    fn row(&self) -> usize {
        if self.stride == 1 {
            self.w + 2
        } else {
            self.w / 2 + 1
        }
    }
    /// Largest tap shift (within a phase grid).
    fn max_shift(&self) -> usize {
        if self.stride == 1 {
            2 * self.row() + 2
        } else {
            self.row() + 1
        }
    }
    /// Output positions computed (the output rows, padding columns included), rounded up to
    /// whole blocks.
    fn positions(&self) -> usize {
        (self.out_size().0 * self.row()).next_multiple_of(POSITION_BLOCK)
    }
    /// Positions of one phase grid (the whole padded grid for stride 1): every one a tap of a
    /// computed position reads.
    fn phase_positions(&self) -> usize {
        self.positions() + self.max_shift()
    }
    /// Phase grids: 1, or 4 for stride 2.
    fn phases(&self) -> usize {
        self.stride * self.stride
    }
    /// Grid positions the forward's image holds, all phases.
    fn grid_positions(&self) -> usize {
        self.phases() * self.phase_positions()
    }
    /// The phase grid tap `tap` reads, and its shift there.
    fn tap_phase_and_shift(&self, tap: usize) -> (usize, usize) {
        let (ky, kx) = (tap / 3, tap % 3);
        if self.stride == 1 {
            (0, ky * self.row() + kx)
        } else {
            (ky % 2 * 2 + kx % 2, ky / 2 * self.row() + kx / 2)
        }
    }
    /// Output channels rounded up to whole B panels: the row stride of the forward's output.
    fn cout_padded(&self) -> usize {
        self.cout.next_multiple_of(NR)
    }

    /// Packs weights [cout, cin, 3, 3] (fp32) as the forward's B: k = tap * pairs + c holds
    /// the bf16 pair (w[co, 2c, tap], w[co, 2c + 1, tap]), in panels of 32 output channels.
    pub fn pack_weights<'a>(&self, weight: &[f32], buf: &'a mut Vec<u32>) -> PackedB<'a> {
        let (cin, cout, pairs) = (self.cin, self.cout, self.pairs());
        assert_eq!(weight.len(), cout * cin * 9, "weights of a {cin} -> {cout} 3x3 conv");
        let (kp, given) = (9 * pairs, cin.div_ceil(2));
        let out = words(buf, self.cout_padded() / NR * kp * NR);
        // per panel and channel pair, the 18 weights of each of the 32 output channels (two
        // channels' 9 taps, adjacent in memory) are read once into a [value][channel] block, and
        // each tap's 32 words converted from it by branch-free code the compiler vectorises:
        // converting value by value, in the weights' order, took 1.5x as long on a Zen 3
        for (panel, block) in out.chunks_exact_mut(kp * NR).enumerate() {
            let rows = weight.chunks_exact(cin * 9).skip(panel * NR).take(NR);
            let mut values = [[0f32; NR]; 18];
            for c in 0..pairs {
                if c >= given {
                    for tap in 0..9 {
                        block[(tap * pairs + c) * NR..][..NR].fill(0);
                    }
                    continue;
                }
                // the second channel of the last pair may not exist: its taps are zero
                let n = if 2 * c + 1 < cin { 18 } else { 9 };
                for (j, w) in rows.clone().enumerate() {
                    for (v, &x) in values.iter_mut().zip(&w[2 * c * 9..2 * c * 9 + n]) {
                        v[j] = x;
                    }
                }
                if n == 9 {
                    values[9..].iter_mut().for_each(|v| v.fill(0.0));
                }
                for tap in 0..9 {
                    let words = &mut block[(tap * pairs + c) * NR..][..NR];
                    for ((word, &l), &h) in words.iter_mut().zip(&values[tap]).zip(&values[9 + tap]) {
                        *word = pair(l, h);
                    }
                }
            }
        }
        PackedB { n: cout, kp, data: out }
    }

    /// Packs one image [cin, h, w] (fp32) as the forward's A: channels-last on the padded grid
    /// (stride 2: on the four phase grids, one after the other), row i (a grid position)
    /// holding the bf16 channel pairs there.
    pub fn pack_image<'a>(&self, x: &[f32], buf: &'a mut Vec<u32>) -> &'a [u32] {
        let (h, w, row, pairs, cin) = (self.h, self.w, self.row(), self.pairs(), self.cin);
        assert_eq!(x.len(), cin * h * w, "an image of {cin} channels of {h}x{w}");
        if self.stride == 2 {
            return self.pack_image_phases(x, buf);
        }
        let out = words(buf, self.grid_positions() * pairs);
        let given = cin.div_ceil(2);
        // zeros where nothing is written below: the padding positions, and the channel pairs
        // past cin of the image's positions
        for gap in self.padding_runs(row + 1, self.grid_positions(), (h, w)) {
            out[gap.start * pairs..gap.end * pairs].fill(0);
        }
        if given < pairs {
            for y in 0..h {
                for i in (y + 1) * row + 1..(y + 1) * row + 1 + w {
                    out[i * pairs + given..(i + 1) * pairs].fill(0);
                }
            }
        }
        for y in 0..h {
            self.pair_row(x, |c| (c * h + y) * w, w, out, (y + 1) * row + 1);
        }
        out
    }

    /// Rows `at..at + n` of the forward's image `out` = the bf16 channel pairs of n positions:
    /// channel c's values at `src[start(c)..][..n]`.
    fn pair_row(&self, src: &[f32], start: impl Fn(usize) -> usize, n: usize, out: &mut [u32], at: usize) {
        let (cin, pairs) = (self.cin, self.pairs());
        let given = cin.div_ceil(2);
        assert!((0..cin).all(|c| start(c) + n <= src.len()) && (at + n) * pairs <= out.len());
        let (from, dst) = (src.as_ptr(), out.as_mut_ptr());
        for x0 in (0..n).step_by(16) {
            for c0 in (0..given).step_by(16) {
                let lo = |c: usize| from.wrapping_add(start(2 * (c0 + c)) + x0);
                let hi = |c: usize| {
                    let ch = 2 * (c0 + c) + 1;
                    if ch < cin {
                        from.wrapping_add(start(ch) + x0)
                    } else {
                        std::ptr::null()
                    }
                };
                let to = |i: usize| dst.wrapping_add((at + x0 + i) * pairs + c0);
                // SAFETY: reads are masked to min(16, n - x0) values of existing channels, writes
                // to min(16, given - c0) pairs of rows inside `out` (both asserted above).
                unsafe { transpose::pair_and_transpose((given - c0).min(16), (n - x0).min(16), lo, hi, to) }
            }
        }
    }

    /// [`Self::pack_image`] for stride 2: each image row of a phase's columns is gathered into
    /// fp32 rows (staged after the packed image in `buf`), then paired and transposed.
    fn pack_image_phases<'a>(&self, x: &[f32], buf: &'a mut Vec<u32>) -> &'a [u32] {
        let (h, w, row, pairs, cin) = (self.h, self.w, self.row(), self.pairs(), self.cin);
        let (ho, wo) = self.out_size();
        let len = self.grid_positions() * pairs;
        let (out, staging) = words(buf, len + cin * wo).split_at_mut(len);
        let staging: &mut [f32] = bytemuck::cast_slice_mut(staging);
        out.fill(0);
        for phase in 0..4 {
            let (a, b) = (phase / 2, phase % 2);
            // phase column j is padded column 2j + b, image column 2j + b - 1: image columns
            // first, first + 2, ... land on phase columns first, first + 1, ...
            let first = 1 - b;
            for i in 0..=ho {
                // phase row i is padded row 2i + a, image row 2i + a - 1
                let Some(y) = (2 * i + a).checked_sub(1).filter(|&y| y < h) else { continue };
                for (c, dst) in staging.chunks_exact_mut(wo).enumerate() {
                    let src = &x[(c * h + y) * w..(c * h + y + 1) * w];
                    for (d, &v) in dst.iter_mut().zip(src[first..].iter().step_by(2)) {
                        *d = v;
                    }
                }
                let at = phase * self.phase_positions() + i * row + first;
                self.pair_row(staging, |c| c * wo, wo, out, at);
            }
        }
        out
    }

    /// Elements of the forward's output buffer.
    pub fn output_len(&self) -> usize {
        self.positions() * self.cout_padded()
    }

    /// out [positions, cout padded] = the convolution of the packed image by the packed
    /// weights, the position blocks split over `threads` rayon tasks. Start `out` on a 64-byte
    /// line (see the module's note on tile loads): any other start is correct but slower.
    pub fn run(&self, weights: &PackedB, image: &[u32], out: &mut [f32], threads: usize) {
        let shifts = std::array::from_fn(|tap| {
            let (phase, shift) = self.tap_phase_and_shift(tap);
            phase * self.phase_positions() + shift
        });
        self.run_taps(weights, image, out, threads, (shifts, 0..9));
    }

    /// [`Self::run`] on the packed taps `taps` only (their weights' k), packed tap t reading
    /// the image `shifts[t]` rows on, which must be a shift of this conv: the input gradient of
    /// a stride-2 conv (`strided_input_grad.rs`) packs its four phases' taps as one kernel of
    /// nine and runs a few at a time. AMX runs all nine or none.
    pub(super) fn run_taps(
        &self,
        weights: &PackedB,
        image: &[u32],
        out: &mut [f32],
        threads: usize,
        (shifts, taps): ([usize; 9], std::ops::Range<usize>),
    ) {
        assert!(weights.n == self.cout && weights.kp == 9 * self.pairs());
        assert!(image.len() == self.grid_positions() * self.pairs() && out.len() == self.output_len());
        let within_grid = self.grid_positions() - self.positions();
        assert!(taps.end <= 9 && !taps.is_empty() && shifts[taps.clone()].iter().all(|&s| s <= within_grid));
        assert!(self.kernel != Kernel::Amx || taps == (0..9), "AMX runs all nine taps");
        let blocks = self.positions() / POSITION_BLOCK;
        let tasks = threads.clamp(1, blocks);
        let geometry =
            super::amx::ForwardGeometry { pairs: self.pairs(), taps: shifts, out_stride: self.cout_padded() };
        let (out, live_pairs) = (SendPtr(out.as_mut_ptr()), self.cin.div_ceil(2));
        let register_block = self.register_block();
        let task = |t: usize| {
            let range = blocks * t / tasks * POSITION_BLOCK..blocks * (t + 1) / tasks * POSITION_BLOCK;
            // SAFETY: the kernel runs on this CPU (checked in `on`); the buffers have the lengths
            // asserted above, which cover every read (positions + largest shift) and write;
            // tasks write disjoint position ranges.
            unsafe {
                match register_block {
                    None => super::amx::implicit_conv(&geometry, weights, image.as_ptr(), out.get(), range),
                    Some(block) => super::implicit_avx512::forward_blocks(
                        &geometry,
                        weights,
                        live_pairs,
                        image.as_ptr(),
                        out.get(),
                        (range, taps.clone()),
                        self.block_rows.forward,
                        |blk, segments| block(blk, segments),
                    ),
                }
            }
        };
        run_tasks(tasks, task);
    }

    /// y [cout, ho, wo] = the valid positions of the output, transposed back to channel planes,
    /// plus `bias` when given.
    pub fn unpad(&self, out: &[f32], bias: Option<&[f32]>, y: &mut [f32]) {
        let ((h, w), row, stride, cout) = (self.out_size(), self.row(), self.cout_padded(), self.cout);
        assert!(y.len() == cout * h * w && out.len() == self.output_len());
        assert!(bias.is_none_or(|b| b.len() >= cout));
        let (src, dst) = (out.as_ptr(), y.as_mut_ptr());
        for yy in 0..h {
            for x0 in (0..w).step_by(16) {
                for c0 in (0..cout).step_by(16) {
                    let (n, nc) = ((w - x0).min(16), (cout - c0).min(16));
                    let from = |i: usize| src.wrapping_add((yy * row + x0 + i) * stride + c0);
                    let to = |c: usize| dst.wrapping_add(((c0 + c) * h + yy) * w + x0);
                    // SAFETY: reads stay inside `out`'s
                    // rows of computed positions, writes inside y's planes (masked to n, nc).
                    unsafe { transpose::transpose_block_bias(n, nc, from, bias.map(|b| &b[c0..c0 + nc]), to) }
                }
            }
        }
    }

    /// Columns of the weight gradient's image layout: channels rounded up to two B tiles.
    fn grad_channels(&self) -> usize {
        self.cin.next_multiple_of(2 * PAIR_STEP)
    }
    /// Position pairs the weight gradient's image holds per parity (and phase).
    fn grad_pairs(&self) -> usize {
        (self.positions() + self.max_shift()) / 2 + 1
    }
    /// Copies of the image the weight gradient's B holds: two parities per phase.
    fn grad_copies(&self) -> usize {
        2 * self.phases()
    }
    /// Words per row of the weight gradient's dy: the computed positions, two to a word.
    fn dy_words(&self) -> usize {
        self.positions() / 2
    }

    /// Packs one image [cin, h, w] (fp32) as the weight gradient's B: for parity q in 0, 1 (of
    /// each phase grid, stride 2), row t holds, for each channel, the bf16 pair at grid
    /// positions (2t + q, 2t + q + 1).
    pub fn pack_image_pairs<'a>(&self, x: &[f32], buf: &'a mut Vec<u32>) -> &'a [u32] {
        let (h, w, row, cols, rows, cin) =
            (self.h, self.w, self.row(), self.grad_channels(), self.grad_pairs(), self.cin);
        assert_eq!(x.len(), cin * h * w, "an image of {cin} channels of {h}x{w}");
        // the copies, then 16 channels' grid planes in plain bf16 (staging)
        let plane = 2 * rows + 2;
        let copies = self.grad_copies();
        let out = words(buf, copies * rows * cols + 16 * plane / 2);
        let (out, staging) = out.split_at_mut(copies * rows * cols);
        // every row gets channels 0..cin below; the columns past them stay zero
        if cin < cols {
            out.chunks_exact_mut(cols).for_each(|r| r[cin..].fill(0));
        }
        // the u16 halves of the u32 words
        let halves: &mut [u16] = bytemuck::cast_slice_mut(staging);
        for (phase, c0) in (0..self.phases()).flat_map(|p| (0..cin).step_by(16).map(move |c0| (p, c0))) {
            let nc = (cin - c0).min(16);
            for (c, src) in x[c0 * h * w..(c0 + nc) * h * w].chunks_exact(h * w).enumerate() {
                let plane_c = &mut halves[c * plane..(c + 1) * plane];
                if self.stride == 2 {
                    self.stage_phase_plane(phase, src, plane_c);
                    continue;
                }
                for gap in self.padding_runs(row + 1, plane, (h, w)) {
                    plane_c[gap].fill(0);
                }
                for (y, src) in src.chunks_exact(w).enumerate() {
                    let at = (y + 1) * row + 1;
                    convert_plain(src, &mut plane_c[at..at + w]);
                }
            }
            let (from, dst) = (halves.as_ptr(), out.as_mut_ptr());
            for q in 0..2 {
                let copy = 2 * phase + q;
                for t0 in (0..rows).step_by(16) {
                    let lanes = (rows - t0).min(16);
                    // channel c's words at grid positions (2t + q, 2t + q + 1), unaligned for q = 1
                    let src = |c: usize| from.wrapping_add(c * plane + 2 * t0 + q).cast::<u32>();
                    let to = |t: usize| dst.wrapping_add((copy * rows + t0 + t) * cols + c0);
                    // SAFETY: reads are masked to `lanes`
                    // words inside the staged planes (2 * rows + 2 values each), writes to `nc`
                    // channels of rows inside `out`.
                    unsafe { transpose::transpose_block(nc, lanes, src, to) }
                }
            }
        }
        out
    }

    /// One channel's plane [h, w] as phase grid `phase` of a stride-2 conv in bf16: position
    /// (i, j) = the padded image's (2i + a, 2j + b), zero on the padding and past the grid.
    fn stage_phase_plane(&self, phase: usize, src: &[f32], plane: &mut [u16]) {
        let (h, w, row) = (self.h, self.w, self.row());
        let (a, b) = (phase / 2, phase % 2);
        plane.fill(0);
        for i in 0..=self.out_size().0 {
            let Some(y) = (2 * i + a).checked_sub(1).filter(|&y| y < h) else { continue };
            let dst = &mut plane[i * row + 1 - b..];
            for (d, &v) in dst.iter_mut().zip(src[y * w + 1 - b..(y + 1) * w].iter().step_by(2)) {
                *d = super::to_bf16(v);
            }
        }
    }

    /// The positions of a grid of `len` that are not the image's, as runs, for an image of
    /// `h` x `w` whose row y is at `first + y row` .. + w (the forward's padded images: `first`
    /// = w + 3; dy on the grid of computed positions: 0).
    fn padding_runs(
        &self,
        first: usize,
        len: usize,
        (h, w): (usize, usize),
    ) -> impl Iterator<Item = std::ops::Range<usize>> {
        let row = self.row();
        (0..=h).map(move |y| {
            let start = if y == 0 { 0 } else { first + (y - 1) * row + w };
            let end = if y == h { len } else { first + y * row };
            start.min(len)..end.min(len)
        })
    }

    /// Packs dy [cout, h, w] (fp32) as the weight gradient's A: a row per output channel of the
    /// computed positions in plain bf16 (zero on the padding columns), rows rounded up to tiles.
    pub fn pack_output_grad<'a>(&self, dy: &[f32], buf: &'a mut Vec<u32>) -> &'a [u32] {
        let ((h, w), row, cout, dy_words) = (self.out_size(), self.row(), self.cout, self.dy_words());
        assert_eq!(dy.len(), cout * h * w, "a gradient of {cout} channels of {h}x{w}");
        let out = words(buf, cout.next_multiple_of(2 * ROW_STEP) * dy_words);
        // the u16 halves of the u32 words
        let halves: &mut [u16] = bytemuck::cast_slice_mut(out);
        // zeros where nothing is written below: the padding columns, and the rows past cout
        let (rows_given, rows_past_cout) = halves.split_at_mut(cout * 2 * dy_words);
        rows_past_cout.fill(0);
        for r in rows_given.chunks_exact_mut(2 * dy_words) {
            for gap in self.padding_runs(0, 2 * dy_words, (h, w)) {
                r[gap].fill(0);
            }
        }
        for (co, plane) in dy.chunks_exact(h * w).enumerate() {
            for (y, src) in plane.chunks_exact(w).enumerate() {
                let at = 2 * co * dy_words + y * row;
                convert_plain(src, &mut halves[at..at + w]);
            }
        }
        out
    }

    /// Elements of the weight-gradient sums: [cout rounded to 32, 9, grad channels].
    pub fn weight_grad_len(&self) -> usize {
        self.cout.next_multiple_of(2 * ROW_STEP) * 9 * self.grad_channels()
    }

    /// acc[co, tap, c] += the weight gradient of one image, from [`Self::pack_image_pairs`] and
    /// [`Self::pack_output_grad`], the taps split over `threads` rayon tasks. Start `acc` on a
    /// 64-byte line, as `out` of [`Self::run`].
    pub fn add_weight_grad(&self, image: &[u32], dy: &[u32], acc: &mut [f32], threads: usize) {
        assert!(image.len() == self.grad_copies() * self.grad_pairs() * self.grad_channels());
        assert!(dy.len() == self.cout.next_multiple_of(2 * ROW_STEP) * self.dy_words());
        assert!(acc.len() == self.weight_grad_len());
        let geometry = super::amx::WeightGradGeometry {
            cout: self.cout,
            cin: self.cin,
            channels: self.grad_channels(),
            tap_rows: std::array::from_fn(|tap| {
                // pairs starting at an odd position live in the second copy of the phase
                let (phase, shift) = self.tap_phase_and_shift(tap);
                (2 * phase + shift % 2) * self.grad_pairs() + shift / 2
            }),
            dy_words: self.dy_words(),
        };
        let tasks = threads.clamp(1, 9);
        let acc = SendPtr(acc.as_mut_ptr());
        let register_block = self.register_block();
        let task = |t: usize| {
            let taps = 9 * t / tasks..9 * (t + 1) / tasks;
            // SAFETY: the kernel runs on this CPU (checked in `on`); the buffers have the lengths
            // asserted above, which cover every read (see `grad_pairs`) and write; tasks write
            // disjoint taps.
            unsafe {
                let (image, dy) = (image.as_ptr(), dy.as_ptr());
                match register_block {
                    None => super::amx::implicit_weight_grad(&geometry, image, dy, acc.get(), taps),
                    Some(block) => super::implicit_avx512::weight_grad_blocks(
                        &geometry,
                        image,
                        dy,
                        acc.get(),
                        taps,
                        self.block_rows.weight_grad,
                        |blk, segments| block(blk, segments),
                    ),
                }
            }
        };
        run_tasks(tasks, task);
    }

    /// dweight [cout, cin, 3, 3] += the sums `acc` of [`Self::add_weight_grad`].
    pub fn add_sums_to_weight_grad(&self, acc: &[f32], dweight: &mut [f32]) {
        let (cin, channels) = (self.cin, self.grad_channels());
        assert!(acc.len() == self.weight_grad_len() && dweight.len() == self.cout * cin * 9);
        for (co, dw) in dweight.chunks_exact_mut(cin * 9).enumerate() {
            let sums = &acc[co * 9 * channels..(co + 1) * 9 * channels];
            for (c, taps) in dw.chunks_exact_mut(9).enumerate() {
                for (tap, d) in taps.iter_mut().enumerate() {
                    *d += sums[tap * channels + c];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every packer writes every word it hands out: packing into a buffer full of NaN pairs
    /// (what stale data could hold: 0 x NaN in a padded product would poison a sum) gives the
    /// same words as packing into a fresh one.
    #[test]
    fn packers_overwrite_stale_buffers() {
        // channel counts off the tile sizes, an odd width, cin both below and above one tile
        for (cin, cout, h, w) in [(20, 24, 5, 7), (40, 17, 6, 9), (16, 40, 4, 4)] {
            let Some(conv) = ImplicitConv::new(cin, cout, h, w, 1) else {
                eprintln!("skipped: implicit convs turned off (MDC_BF16_KERNEL=...-im2col)");
                return;
            };
            let x: Vec<f32> = (0..cin * h * w).map(|i| (i % 13) as f32 - 6.0).collect();
            let dy: Vec<f32> = (0..cout * h * w).map(|i| (i % 7) as f32 - 3.0).collect();
            let nan = 0x7fc0_7fc0u32;
            let check = |what: &str, pack: &dyn Fn(&mut Vec<u32>) -> Vec<u32>| {
                let fresh = pack(&mut Vec::new());
                let stale = pack(&mut vec![nan; fresh.len() * 3]);
                assert_eq!(fresh, stale, "{what} of {cin} -> {cout} at {h}x{w} left stale words");
            };
            check("pack_image", &|b| conv.pack_image(&x, b).to_vec());
            check("pack_image_pairs", &|b| conv.pack_image_pairs(&x, b).to_vec());
            check("pack_output_grad", &|b| conv.pack_output_grad(&dy, b).to_vec());
        }
    }
}

#[cfg(test)]
mod weight_layout_tests {
    use super::*;

    /// The forward's B straight from its definition: word (panel, tap * pairs + c, j) holds the
    /// pair (w[co, 2c, tap], w[co, 2c + 1, tap]) for co = 32 panel + j, zero past cin and cout.
    fn by_definition(conv: &ImplicitConv, weight: &[f32]) -> Vec<u32> {
        let (cin, pairs) = (conv.cin, conv.pairs());
        let kp = 9 * pairs;
        let mut out = vec![0u32; conv.cout_padded() / NR * kp * NR];
        for co in 0..conv.cout {
            let w = &weight[co * cin * 9..(co + 1) * cin * 9];
            for c in 0..cin.div_ceil(2) {
                for tap in 0..9 {
                    let hi = if 2 * c + 1 < cin { w[(2 * c + 1) * 9 + tap] } else { 0.0 };
                    out[(co / NR * kp + tap * pairs + c) * NR + co % NR] = pair(w[2 * c * 9 + tap], hi);
                }
            }
        }
        out
    }

    #[test]
    fn packed_weights_follow_the_layout_and_overwrite_stale_words() {
        for (cin, cout) in [(16, 8), (33, 40), (64, 17), (20, 64), (256, 128)] {
            let conv = ImplicitConv::on(Kernel::Portable, cin, cout, 4, 4, 1).unwrap();
            let weight: Vec<f32> =
                (0..cout * cin * 9).map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0).collect();
            let mut stale = vec![0x7fc0_7fc0u32; 1 << 20];
            let packed = conv.pack_weights(&weight, &mut stale);
            assert_eq!(packed.data, &by_definition(&conv, &weight)[..], "{cin} -> {cout}");
        }
    }
}
