//! 3x3 convolutions in bf16 on AMX or AVX512_BF16 ([`ImplicitConv::kernel`]), same-size and
//! stride-2 downsamples: the forward, the weight gradient and the input gradient (the flipped
//! conv of a same-size conv, [`StridedInputGrad`]'s four phases of a downsample) are implicit
//! GEMMs straight from the images ([`ImplicitConv`]), without im2col's columns. `conv.rs` hands
//! a conv over where [`ConvGeom::implicit`] applies.

use super::conv_geom::{flip_kernel, ConvGeom};
use crate::kernels::bf16::layout::PackedB;
use crate::kernels::bf16::{ImplicitConv, Precision, StridedInputGrad};
use crate::kernels::real::Real;
use crate::kernels::workspace::{sized, sized_aligned, sum_into_first, Workers};

const F32_ONLY: &str = "implicit convs are planned for f32 data only";

fn f32s<T: Real>(v: &[T]) -> &[f32] {
    T::as_f32(v).expect(F32_ONLY)
}

fn f32s_mut<T: Real>(v: &mut [T]) -> &mut [f32] {
    T::as_f32_mut(v).expect(F32_ONLY)
}

/// y = conv(x, weight) + bias, image by image: the image packed once, then the products.
#[allow(clippy::too_many_arguments)]
pub(super) fn forward<T: Real>(
    workers: &mut Workers<T>,
    g: &ConvGeom,
    implicit: &ImplicitConv,
    batch: usize,
    x: &[T],
    weight: &[T],
    bias: &[T],
    y: &mut [T],
) {
    let (x, bias) = (f32s(x), f32s(bias));
    let mut packed = std::mem::take(&mut workers.shared_packed);
    let w = implicit.pack_weights(f32s(weight), &mut packed);
    workers.par_images(batch, y, g.out_len(), |images, y, s| {
        for (i, n) in images.enumerate() {
            let image = implicit.pack_image(&x[n * g.in_len()..(n + 1) * g.in_len()], &mut s.pb);
            let out = f32s_mut(sized_aligned(&mut s.a, implicit.output_len()));
            implicit.run(&w, image, out, s.gemm_threads);
            implicit.unpad(out, Some(bias), f32s_mut(&mut y[i * g.out_len()..(i + 1) * g.out_len()]));
        }
    });
    workers.shared_packed = packed;
}

/// The implicit GEMMs of one conv's backward.
pub(super) struct BackwardPlan {
    weight_grad: ImplicitConv,
    input_grad: InputGrad,
}

/// How dx is computed, when it is wanted.
enum InputGrad {
    None,
    /// A same-size conv's: the flipped conv.
    Flipped(ImplicitConv),
    /// A stride-2 conv's: four stride-1 convs of dy, one per phase of dx.
    Strided(StridedInputGrad),
    /// A stride-2 conv's where dy has too few channels to run implicitly: `conv.rs` computes it
    /// (W^T dy, then col2im), this plan the weight gradient.
    ByIm2col,
}

impl BackwardPlan {
    /// A plan where the weight gradient runs implicitly, and dx too (the flipped conv of a
    /// same-size conv, the phases of a downsample's) where dy's channels make it pay; else
    /// None, and `conv.rs`'s im2col path computes them all.
    pub fn new<T: Real>(g: &ConvGeom, precision: Precision, want_dx: bool) -> Option<BackwardPlan> {
        let weight_grad = g.implicit::<T>(precision)?;
        let input_grad = match want_dx {
            false => InputGrad::None,
            true if g.same_size() => InputGrad::Flipped(g.flipped().implicit::<T>(precision)?),
            true => StridedInputGrad::on(weight_grad.kernel(), g.cin, g.cout, g.h, g.w)
                .map_or(InputGrad::ByIm2col, InputGrad::Strided),
        };
        Some(BackwardPlan { weight_grad, input_grad })
    }

    /// Whether dx is left to `conv.rs` (see [`InputGrad::ByIm2col`]).
    pub fn input_grad_by_im2col(&self) -> bool {
        matches!(self.input_grad, InputGrad::ByIm2col)
    }
}

/// dx's packed weights, packed once for all images.
enum PackedInputGrad<'a> {
    None,
    Flipped(&'a ImplicitConv, PackedB<'a>),
    Strided(&'a StridedInputGrad, PackedB<'a>),
}

/// Accumulates dweight and dbias, and writes dx when the plan has it (the caller passes None
/// when [`BackwardPlan::input_grad_by_im2col`]).
#[allow(clippy::too_many_arguments)]
pub(super) fn backward<T: Real>(
    workers: &mut Workers<T>,
    g: &ConvGeom,
    plan: &BackwardPlan,
    batch: usize,
    x: &[T],
    weight: &[T],
    dy: &[T],
    dx: Option<&mut [T]>,
    dweight: &mut [T],
    dbias: &mut [T],
) {
    let (cout, pos, dw) = (g.cout, g.positions(), &plan.weight_grad);
    let (x, dy) = (f32s(x), f32s(dy));
    let (dx, per_image) = g.input_grad_out(dx);
    // dx's kernel (flipped, or split by phase), packed once for all images
    let mut shared = std::mem::take(&mut workers.shared);
    let mut packed = std::mem::take(&mut workers.shared_packed);
    let input_grad = match &plan.input_grad {
        InputGrad::Flipped(conv) => {
            let wflip = sized(&mut shared, g.cin * cout * 9);
            flip_kernel(g, weight, wflip);
            PackedInputGrad::Flipped(conv, conv.pack_weights(f32s(wflip), &mut packed))
        }
        InputGrad::Strided(grad) => {
            let staging = f32s_mut(sized(&mut shared, g.cin * cout * 9));
            PackedInputGrad::Strided(grad, grad.pack_weights(f32s(weight), staging, &mut packed))
        }
        InputGrad::None | InputGrad::ByIm2col => PackedInputGrad::None,
    };
    let used = workers.par_images(batch, dx, per_image, |images, dx, s| {
        super::with_avx2(|| {
            let sums = sized_aligned(&mut s.acc, dw.weight_grad_len());
            sums.fill(0.0);
            let db = sized(&mut s.c, cout);
            db.fill(T::ZERO);
            for (i, n) in images.enumerate() {
                let dyn_ = &dy[n * g.out_len()..(n + 1) * g.out_len()];
                for (b, row) in db.iter_mut().zip(dyn_.chunks_exact(pos)) {
                    *b += T::from_f32(super::sum_map(row, |v| v));
                }
                let image = dw.pack_image_pairs(&x[n * g.in_len()..(n + 1) * g.in_len()], &mut s.pa);
                let dy_rows = dw.pack_output_grad(dyn_, &mut s.pc);
                dw.add_weight_grad(image, dy_rows, sums, s.gemm_threads);
                let dxn = &mut dx[i * per_image..(i + 1) * per_image];
                match &input_grad {
                    PackedInputGrad::Flipped(conv, w) => {
                        let image = conv.pack_image(dyn_, &mut s.pb);
                        let out = f32s_mut(sized_aligned(&mut s.a, conv.output_len()));
                        conv.run(w, image, out, s.gemm_threads);
                        conv.unpad(out, None, f32s_mut(dxn));
                    }
                    PackedInputGrad::Strided(grad, w) => {
                        let image = grad.pack_output_grad(dyn_, &mut s.pb);
                        let out = f32s_mut(sized_aligned(&mut s.a, grad.output_len()));
                        let staging = f32s_mut(sized(&mut s.b, grad.phase_len()));
                        grad.run(w, image, (out, staging), f32s_mut(dxn), s.gemm_threads);
                    }
                    PackedInputGrad::None => {}
                }
            }
        })
    });
    workers.shared = shared;
    workers.shared_packed = packed;
    // the workers' sums added into the first's, then laid out as dweight
    let mut sums: Vec<&mut [f32]> =
        workers.scratch[..used].iter_mut().map(|s| sized_aligned(&mut s.acc, dw.weight_grad_len())).collect();
    sum_into_first(&mut sums);
    dw.add_sums_to_weight_grad(sums[0], f32s_mut(dweight));
    for s in &workers.scratch[..used] {
        for (d, &p) in dbias.iter_mut().zip(&s.c[..cout]) {
            *d += p;
        }
    }
}
