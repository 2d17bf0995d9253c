//! The register-block loops of the AVX512_BF16 implicit convs, checked on any CPU: a scalar
//! model of the register block (the `VDPBF16PS` arithmetic on plain floats) runs them on packed
//! operands built straight from the layout contract, against that contract's sums written
//! out; where the CPU has AVX512_BF16, the zmm block must give the same bits as the model.
//!
//! The operands are small integers (exact in bf16, every partial sum exact in fp32), so every
//! summation order gives the same bits and the checks are equalities.

use super::*;
use crate::kernels::bf16::{from_bf16, to_bf16};

/// `VDPBF16PS` on plain floats: each lane adds its two bf16 products.
unsafe fn model_block(blk: &Block, segments: &[Segment]) {
    for r in 0..blk.rows {
        for col in 0..16 * blk.z {
            let mut sum = 0f32;
            for s in segments {
                for p in 0..blk.kn {
                    let (a, b) = (*s.a.add(r * blk.lda + p), *s.b.add(p * blk.ldb + col));
                    sum += from_bf16(a as u16) * from_bf16(b as u16);
                    sum += from_bf16((a >> 16) as u16) * from_bf16((b >> 16) as u16);
                }
            }
            let c = blk.c.add(r * blk.ldc + col);
            *c = if blk.add { *c + sum } else { sum };
        }
    }
}

fn small_pairs(len: usize, seed: usize) -> Vec<u32> {
    let v = |i: usize| to_bf16(((i * 7 + seed) % 9) as f32 - 4.0) as u32;
    (0..len).map(|i| v(2 * i) | v(2 * i + 1) << 16).collect()
}

fn dot(a: u32, b: u32) -> f32 {
    from_bf16(a as u16) * from_bf16(b as u16) + from_bf16((a >> 16) as u16) * from_bf16((b >> 16) as u16)
}

/// A register block: the model or the zmm one.
type BlockFn = unsafe fn(&Block, &[Segment]);

/// The model, the portable kernel's block, and the zmm one where the CPU has AVX512_BF16.
fn blocks() -> Vec<(&'static str, BlockFn)> {
    let mut all: Vec<(&'static str, BlockFn)> =
        vec![("model", model_block), ("portable", crate::kernels::bf16::portable::implicit_block)];
    if crate::kernels::bf16::available() {
        all.push(("zmm", zmm_block));
    }
    all
}

#[test]
fn forward_blocks_compute_the_layouts_sums_and_write_only_their_range() {
    // (pairs, live pairs, row, output channels, positions range): ragged blocks of 12, a last
    // panel of 16 or fewer channels, live pairs short of the padded ones
    for (pairs, live, row, n, range) in [
        (16, 16, 9, 40usize, 0..64),
        (16, 10, 7, 17, 32..96),
        (32, 20, 12, 64, 0..32),
        (16, 8, 5, 3, 64..128),
    ] {
        let (kp, out_stride) = (9 * pairs, n.next_multiple_of(NR));
        let taps = std::array::from_fn(|tap| tap / 3 * row + tap % 3);
        let g = ForwardGeometry { pairs, taps, out_stride };
        let grid = range.end + 2 * row + 2;
        let image_words = small_pairs(grid * pairs, 1);
        let image = &image_words;
        let weights = small_pairs(out_stride / NR * kp * NR, 2);
        let packed = PackedB { n, kp, data: &weights };
        // the default blocks of 12 rows, and ragged blocks of 5; all nine taps, and a few (as a
        // stride-2 conv's input gradient runs them)
        let runs = blocks()
            .into_iter()
            .flat_map(|b| [(b, FWD_ROWS, 0..9), (b, 5, 0..9), (b, 12, 5..9), (b, 7, 1..3)]);
        for ((name, block), rows, taps) in runs {
            let sentinel = -1e30f32;
            let mut out = vec![sentinel; (range.end + 32) * out_stride];
            let (image, out_ptr) = (image.as_ptr(), out.as_mut_ptr());
            // SAFETY: the buffers cover every read (grid positions) and write (rows of range)
            unsafe {
                forward_blocks(
                    &g,
                    &packed,
                    live,
                    image,
                    out_ptr,
                    (range.clone(), taps.clone()),
                    rows,
                    |b, s| {
                        assert!(b.rows <= rows, "a block of {} rows, asked for {rows}", b.rows);
                        assert_eq!(s.len(), taps.len(), "a segment per tap");
                        block(b, s)
                    },
                )
            };
            let image = &image_words;
            for (j, row_out) in out.chunks_exact(out_stride).enumerate() {
                for (co, &got) in row_out.iter().enumerate() {
                    let (panel, col) = (co / NR, co % NR);
                    if !range.contains(&j) || co >= n {
                        // outside the range nothing; past n, what the panel's last zmm covers
                        let z = if n - panel * NR > 16 { 2 } else { 1 };
                        let padding_zmm = co >= n && col < 16 * z;
                        assert!(
                            got == sentinel || (range.contains(&j) && padding_zmm),
                            "{name}: wrote [{j}, {co}]"
                        );
                        continue;
                    }
                    let mut want = 0f32;
                    for tap in taps.clone() {
                        let a = &image[(j + tap / 3 * row + tap % 3) * pairs..];
                        for (p, &a) in a[..live].iter().enumerate() {
                            want += dot(a, weights[(panel * kp + tap * pairs + p) * NR + col]);
                        }
                    }
                    assert_eq!(
                        got, want,
                        "{name}: out[{j}, {co}] (pairs {pairs}, live {live}, row {row}, taps {taps:?})"
                    );
                }
            }
        }
    }
}

#[test]
fn weight_grad_blocks_add_the_layouts_sums_to_every_tap() {
    // (cout, cin, channels, row, dy words): ragged row blocks, 16 or fewer channels in the last
    // 32, several cache blocks of k (and one short of a block)
    for (cout, cin, row, dy_words) in
        [(20usize, 40usize, 9, 300), (12, 16, 6, 96), (33, 64, 12, 272), (5, 17, 4, 16)]
    {
        let channels = cin.next_multiple_of(NR);
        let per_parity = dy_words + row + 2;
        let tap_rows = std::array::from_fn(|tap| {
            let shift = tap / 3 * row + tap % 3;
            shift % 2 * per_parity + shift / 2
        });
        let g = WeightGradGeometry { cout, cin, channels, tap_rows, dy_words };
        let image = small_pairs(2 * per_parity * channels, 3);
        let dy = small_pairs(cout.next_multiple_of(NR) * dy_words, 4);
        let acc_len = cout.next_multiple_of(NR) * 9 * channels;
        let start: Vec<f32> = (0..acc_len).map(|i| (i % 5) as f32).collect();
        // the default blocks of 12 output channels, and ragged blocks of 7
        for ((name, block), rows) in blocks().into_iter().flat_map(|b| [(b, WG_ROWS), (b, 7)]) {
            for taps in [0..9, 2..5] {
                let mut acc = start.clone();
                // SAFETY: the buffers cover every read (both parities, every dy row) and write
                unsafe {
                    weight_grad_blocks(
                        &g,
                        image.as_ptr(),
                        dy.as_ptr(),
                        acc.as_mut_ptr(),
                        taps.clone(),
                        rows,
                        |b, s| {
                            assert!(b.rows <= rows, "a block of {} rows, asked for {rows}", b.rows);
                            block(b, s)
                        },
                    )
                };
                for co in 0..cout {
                    for tap in 0..9 {
                        let shift = tap / 3 * row + tap % 3;
                        let b = &image[(shift % 2 * per_parity + shift / 2) * channels..];
                        for c in 0..cin {
                            let i = (co * 9 + tap) * channels + c;
                            let mut want = start[i];
                            if taps.contains(&tap) {
                                for p in 0..dy_words {
                                    want += dot(dy[co * dy_words + p], b[p * channels + c]);
                                }
                            }
                            assert_eq!(acc[i], want, "{name}: acc[{co}, {tap}, {c}] (taps {taps:?})");
                        }
                    }
                }
            }
        }
    }
}
