//! The implicit 3x3 convolutions (`ImplicitConv`) on every bf16 kernel this CPU runs (AMX tiles,
//! AVX512_BF16 zmm, and the portable reference kernel everywhere), driven directly, against the fp32 conv kernel element by element: the
//! forward (which is also the input gradient, as the flipped conv) and the weight gradient.
//!
//! The bound is tests/bf16_kernels.rs's (its `check`): rounding both factors to bf16 (u = 2^-8) moves a
//! product by at most (2u + u^2)|a||b|, the fp32 sums (u32 = 2^-24) add at most
//! (K + 2) u32 sum|a||b| in each kernel, so |bf16 - fp32| <= (2u + u^2 + 2 (K + 2) u32) * S, with
//! S the fp32 kernel run on |x|, |w|, |dy| and K the reduction length (9 Cin for y, H W for dW).

use mdc::base::rng::Rng;
use mdc::kernels::bf16::{BlockRows, ImplicitConv, Kernel, StridedInputGrad};
use mdc::kernels::conv;
use mdc::kernels::Workers;

use crate::bf16_kernels::{abs, check, random};

/// What a stale buffer could hold: NaN in every word (as a bf16 pair, and as fp32).
const NAN_PAIR: u32 = 0x7fc0_7fc0;

/// A 3x3, padding-1 conv: same size (stride 1) or a downsample to h/2 x w/2 (stride 2).
fn geom(cin: usize, cout: usize, h: usize, w: usize, stride: usize) -> conv::ConvGeom {
    conv::ConvGeom { cin, cout, k: 3, stride, pad: 1, h, w, ho: h / stride, wo: w / stride }
}

/// The fp32 conv kernel: y = conv(x, w) (no bias) and dW for `dy`, on one image.
fn fp32(g: &conv::ConvGeom, x: &[f32], w: &[f32], dy: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let mut wk = Workers::<f32>::new();
    let mut y = vec![0f32; g.cout * g.ho * g.wo];
    let zero = vec![0f32; g.cout];
    conv::forward(&mut wk, g, 1, x, w, &zero, &mut y);
    let (mut dw, mut db) = (vec![0f32; w.len()], vec![0f32; g.cout]);
    conv::backward(&mut wk, g, 1, x, w, dy, None, &mut dw, &mut db);
    (y, dw)
}

/// A buffer of `len` floats on a 64-byte line, every one NaN.
fn dirty_aligned(store: &mut Vec<f32>, len: usize) -> &mut [f32] {
    store.clear();
    store.resize(len + 16, f32::from_bits(NAN_PAIR));
    let start = store.as_ptr().align_offset(64).min(16);
    &mut store[start..start + len]
}

/// y and dW of one image by `conv` on `threads` rayon tasks, every buffer handed in dirty.
fn implicit(
    conv: &ImplicitConv,
    g: &conv::ConvGeom,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    threads: usize,
) -> (Vec<f32>, Vec<f32>) {
    let dirty = || vec![NAN_PAIR; 1 << 16];
    let (mut wbuf, mut ibuf, mut pbuf, mut dbuf) = (dirty(), dirty(), dirty(), dirty());
    let (mut ostore, mut astore) = (Vec::new(), Vec::new());
    let packed = conv.pack_weights(w, &mut wbuf);
    let image = conv.pack_image(x, &mut ibuf);
    let out = dirty_aligned(&mut ostore, conv.output_len());
    conv.run(&packed, image, out, threads);
    let mut y = vec![f32::NAN; g.cout * g.ho * g.wo];
    conv.unpad(out, None, &mut y);
    let pairs = conv.pack_image_pairs(x, &mut pbuf);
    let dy_rows = conv.pack_output_grad(dy, &mut dbuf);
    let acc = dirty_aligned(&mut astore, conv.weight_grad_len());
    acc.fill(0.0);
    conv.add_weight_grad(pairs, dy_rows, acc, threads);
    let mut dw = vec![0f32; w.len()];
    conv.add_sums_to_weight_grad(acc, &mut dw);
    (y, dw)
}

fn kernels() -> Vec<Kernel> {
    let all = Kernel::all_available();
    eprintln!("bf16 kernels on this CPU: {all:?}");
    all
}

#[test]
fn implicit_convs_on_every_kernel_are_within_the_rounding_bound() {
    // channel counts off the register blocks and tiles (12 or 16 rows, 16 or 32 columns, 16
    // pairs), odd and one-pixel-narrow images, fewer than 16 output channels; stride-2
    // downsamples (even sizes) to 1x1, to odd sizes, and with an output row of one block or more
    let cases = [
        (16, 8, 5, 7, 1),
        (32, 32, 7, 7, 1),
        (40, 24, 5, 9, 1),
        (16, 64, 6, 6, 1),
        (64, 17, 9, 3, 1),
        (33, 40, 1, 11, 1),
        (16, 32, 8, 8, 2),
        (40, 24, 6, 10, 2),
        (33, 17, 2, 2, 2),
        (32, 64, 16, 16, 2),
        (64, 40, 4, 70, 2),
    ];
    for kernel in kernels() {
        let mut worst = 0f64;
        for (c, &(cin, cout, h, w, stride)) in cases.iter().enumerate() {
            let g = geom(cin, cout, h, w, stride);
            let Some(conv) = ImplicitConv::on(kernel, cin, cout, h, w, stride) else {
                assert!(stride == 2 && kernel == Kernel::Amx, "{kernel:?}: 8+ channel pairs run implicitly");
                continue;
            };
            let mut rng = Rng::new(c as u64 + 100);
            let x = random(&mut rng, cin * h * w);
            let wt = random(&mut rng, cout * cin * 9);
            let dy = random(&mut rng, cout * g.ho * g.wo);
            let (y, dw) = fp32(&g, &x, &wt, &dy);
            let (sy, sdw) = fp32(&g, &abs(&x), &abs(&wt), &abs(&dy));
            let (gy, gdw) = implicit(&conv, &g, &x, &wt, &dy, 1);
            let what = format!("{kernel:?} {cin}->{cout} at {h}x{w}, stride {stride}");
            worst = worst.max(check(&format!("{what} y"), &gy, &y, &sy, 9 * cin));
            worst = worst.max(check(&format!("{what} dW"), &gdw, &dw, &sdw, g.ho * g.wo));
            // one image split over threads: the same sums in the same order
            let split = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
            let (ty, tdw) = split.install(|| implicit(&conv, &g, &x, &wt, &dy, 3));
            assert_eq!((ty, tdw), (gy.clone(), gdw.clone()), "{what}: split over 3 threads differs from 1");
            // ragged register blocks (where the kernel has them): each sum in the same order
            let reblocked = conv.with_block_rows(BlockRows { forward: 5, weight_grad: 7 });
            let (ry, rdw) = implicit(&reblocked, &g, &x, &wt, &dy, 1);
            assert_eq!((ry, rdw), (gy, gdw), "{what}: blocks of 5 and 7 rows differ from the default");
        }
        assert!(worst > 1e-3, "{kernel:?}: results are no different from fp32 (worst {worst} of the bound)");
    }
}

#[test]
fn implicit_convs_accumulate_in_fp32() {
    // every value exact in bf16; every partial sum a multiple of 2^-9 below 2^14, exact in fp32;
    // the totals need 11 and 10 significant bits, which a bf16 sum (8) cannot hold
    let (cin, cout, h, w) = (64, 16, 3, 3);
    let small = 2f32.powi(-9);
    for kernel in kernels() {
        let conv = ImplicitConv::on(kernel, cin, cout, h, w, 1).unwrap();
        let g = geom(cin, cout, h, w, 1);
        // forward: the centre output reads all 9 taps of all 64 channels: one 1, 575 of 2^-9
        let mut x = vec![small; cin * h * w];
        x[0] = 1.0;
        let ones = vec![1f32; cout * cin * 9];
        let dy = vec![0f32; cout * h * w];
        let (y, _) = implicit(&conv, &g, &x, &ones, &dy, 1);
        let centre = 1.0 + (9 * cin - 1) as f32 * small;
        for co in 0..cout {
            assert_eq!(y[co * h * w + 4], centre, "{kernel:?}: output channel {co}");
        }
    }
    let (cin, cout, h, w) = (16, 16, 16, 16);
    for kernel in kernels() {
        let conv = ImplicitConv::on(kernel, cin, cout, h, w, 1).unwrap();
        let g = geom(cin, cout, h, w, 1);
        // weight gradient: the centre tap sums dy x x over all 256 positions: one 1, 255 of 2^-9
        let x = vec![1f32; cin * h * w];
        let mut dy = vec![small; cout * h * w];
        for co in 0..cout {
            dy[co * h * w] = 1.0;
        }
        let wt = vec![0f32; cout * cin * 9];
        let (_, dw) = implicit(&conv, &g, &x, &wt, &dy, 1);
        let centre = 1.0 + (h * w - 1) as f32 * small;
        for (i, taps) in dw.chunks_exact(9).enumerate() {
            assert_eq!(taps[4], centre, "{kernel:?}: weight {i}, centre tap");
        }
    }
}

/// dx of one image by `grad` on `threads` rayon tasks, every buffer handed in dirty.
fn strided_dx(
    grad: &StridedInputGrad,
    g: &conv::ConvGeom,
    w: &[f32],
    dy: &[f32],
    threads: usize,
) -> Vec<f32> {
    let (mut wbuf, mut dbuf) = (vec![NAN_PAIR; 1 << 16], vec![NAN_PAIR; 1 << 16]);
    let mut staging_w = vec![f32::NAN; w.len()];
    let (mut ostore, mut sstore) = (Vec::new(), Vec::new());
    let packed = grad.pack_weights(w, &mut staging_w, &mut wbuf);
    let dy_image = grad.pack_output_grad(dy, &mut dbuf);
    let out = dirty_aligned(&mut ostore, grad.output_len());
    let staging = dirty_aligned(&mut sstore, grad.phase_len());
    let mut dx = vec![f32::NAN; g.cin * g.h * g.w];
    grad.run(&packed, dy_image, (out, staging), &mut dx, threads);
    dx
}

/// The fp32 conv kernel's dx of a conv (im2col: W^T dy, then col2im).
fn fp32_dx(g: &conv::ConvGeom, x: &[f32], w: &[f32], dy: &[f32]) -> Vec<f32> {
    let mut wk = Workers::<f32>::new();
    let (mut dx, mut dw, mut db) = (vec![0f32; x.len()], vec![0f32; w.len()], vec![0f32; g.cout]);
    conv::backward(&mut wk, g, 1, x, w, dy, Some(&mut dx), &mut dw, &mut db);
    dx
}

#[test]
fn strided_input_gradients_on_every_kernel_are_within_the_rounding_bound() {
    // downsamples to 1x1 and to odd sizes, wide rows (more than one position block), dy with 16
    // or 17 channels (the fewest that run implicitly: 8 or 9 pairs) and dx with fewer than 16
    // (a single zmm of output channels) or more than 32 (two panels)
    let cases =
        [(16, 16, 8, 8), (40, 24, 6, 10), (33, 17, 2, 2), (32, 64, 16, 16), (8, 40, 4, 70), (5, 32, 6, 6)];
    for kernel in kernels() {
        let mut worst = 0f64;
        for (c, &(cin, cout, h, w)) in cases.iter().enumerate() {
            let g = geom(cin, cout, h, w, 2);
            let Some(grad) = StridedInputGrad::on(kernel, cin, cout, h, w) else {
                assert_eq!(kernel, Kernel::Amx, "{kernel:?}: dy with 8+ channel pairs runs implicitly");
                continue;
            };
            let mut rng = Rng::new(c as u64 + 200);
            let x = random(&mut rng, cin * h * w);
            let wt = random(&mut rng, cout * cin * 9);
            let dy = random(&mut rng, cout * g.ho * g.wo);
            let want = fp32_dx(&g, &x, &wt, &dy);
            let s = fp32_dx(&g, &x, &abs(&wt), &abs(&dy));
            let got = strided_dx(&grad, &g, &wt, &dy, 1);
            let what = format!("{kernel:?} dx of {cin}->{cout} at {h}x{w}, stride 2");
            // each element sums at most 4 taps of every channel of dy
            worst = worst.max(check(&what, &got, &want, &s, 4 * cout));
            let split = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
            let threaded = split.install(|| strided_dx(&grad, &g, &wt, &dy, 3));
            assert_eq!(threaded, got, "{what}: split over 3 threads differs from 1");
            let reblocked = grad.with_block_rows(BlockRows { forward: 5, weight_grad: 7 });
            assert_eq!(strided_dx(&reblocked, &g, &wt, &dy, 1), got, "{what}: blocks of 5 rows differ");
        }
        if kernel != Kernel::Amx {
            assert!(
                worst > 1e-3,
                "{kernel:?}: results are no different from fp32 (worst {worst} of the bound)"
            );
        }
    }
    // too few channels in dy to pay, and not on AMX: dx stays with im2col
    assert!(StridedInputGrad::on(Kernel::Portable, 32, 14, 8, 8).is_none());
    assert!(StridedInputGrad::on(Kernel::Portable, 32, 32, 7, 8).is_none());
}

#[test]
fn strided_input_gradients_accumulate_in_fp32() {
    // dx at (1, 1) (odd row and column) sums 4 taps of all 64 channels of dy: one 1 and 255 of
    // 2^-9; exact in fp32, 10 significant bits that a bf16 sum (8) cannot hold
    let (cin, cout, h, w) = (16, 64, 4, 4);
    let small = 2f32.powi(-9);
    for kernel in kernels() {
        let Some(grad) = StridedInputGrad::on(kernel, cin, cout, h, w) else { continue };
        let g = geom(cin, cout, h, w, 2);
        let mut dy = vec![small; cout * 2 * 2];
        dy[0] = 1.0;
        let dx = strided_dx(&grad, &g, &vec![1f32; cout * cin * 9], &dy, 1);
        let want = 1.0 + (4 * cout - 1) as f32 * small;
        for c in 0..cin {
            assert_eq!(dx[c * h * w + w + 1], want, "{kernel:?}: channel {c}");
        }
    }
}
