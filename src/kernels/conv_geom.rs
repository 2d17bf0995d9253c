//! The geometry of one 2-D convolution on one image, shared by the im2col path (`conv.rs`) and
//! the bf16 implicit-GEMM path on AMX or AVX512_BF16 (`conv_amx.rs`).

use crate::kernels::bf16::{ImplicitConv, Precision};
use crate::kernels::real::Real;

/// Sizes of one convolution on one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeom {
    pub cin: usize,
    pub cout: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
    pub h: usize,
    pub w: usize,
    pub ho: usize,
    pub wo: usize,
}

impl ConvGeom {
    /// Rows of the column matrix (= columns of the weight matrix).
    pub fn kdim(&self) -> usize {
        self.cin * self.k * self.k
    }
    /// Output positions per image.
    pub fn positions(&self) -> usize {
        self.ho * self.wo
    }
    /// Output rows per band so that a band's columns (`kdim` rows) hold at most `budget` elements.
    pub(super) fn band_rows(&self, kdim: usize, budget: usize) -> usize {
        (budget / (kdim * self.wo).max(1)).clamp(1, self.ho)
    }
    pub(super) fn same_size(&self) -> bool {
        self.stride == 1 && self.wo == self.w && self.ho == self.h
    }
    pub(super) fn pointwise(&self) -> bool {
        self.k == 1 && self.stride == 1 && self.pad == 0
    }
    /// The bf16 implicit GEMM of this conv (3x3, padding 1: stride 1 same size, or a stride-2
    /// downsample of even sizes) on f32 data, where the channel count makes it pay and the
    /// kernel runs it (see [`ImplicitConv::new`]).
    pub(super) fn implicit<T: Real>(&self, precision: Precision) -> Option<ImplicitConv> {
        let is_f32 = T::as_f32(&[]).is_some();
        let downsample = self.stride == 2 && self.ho * 2 == self.h && self.wo * 2 == self.w;
        let shape = self.k == 3 && self.pad == 1 && (self.same_size() || downsample);
        (precision == Precision::Bf16 && is_f32 && shape)
            .then(|| ImplicitConv::new(self.cin, self.cout, self.h, self.w, self.stride))
            .flatten()
    }
    /// This conv with input and output swapped: the conv whose forward is the input gradient
    /// of a stride-1 same-size conv (with the kernel flipped, see [`flip_kernel`]). The padding
    /// saturates: a padding of k or more (which a transposed conv's adjoint may have) must not
    /// underflow where it is never read.
    pub(super) fn flipped(&self) -> ConvGeom {
        ConvGeom { cin: self.cout, cout: self.cin, pad: (self.k - 1).saturating_sub(self.pad), ..*self }
    }
    pub(super) fn in_len(&self) -> usize {
        self.cin * self.h * self.w
    }
    /// A backward's dx as `Workers::par_images` splits it: the buffer and one image's length, or
    /// an empty buffer and 0 where dx is not wanted.
    pub(super) fn input_grad_out<'a, T>(&self, dx: Option<&'a mut [T]>) -> (&'a mut [T], usize) {
        match dx {
            Some(d) => (d, self.in_len()),
            None => (&mut [], 0),
        }
    }
    pub(super) fn out_len(&self) -> usize {
        self.cout * self.ho * self.wo
    }
    /// Output columns `ox` whose input column `ox*stride + kx - pad` lies inside the image.
    pub(super) fn valid_cols(&self, kx: usize) -> (usize, usize) {
        let lo = if self.pad > kx { (self.pad - kx).div_ceil(self.stride) } else { 0 };
        let hi = if self.w + self.pad > kx {
            ((self.w - 1 + self.pad - kx) / self.stride + 1).min(self.wo)
        } else {
            0
        };
        (lo.min(hi), hi)
    }
}

/// wflip[ci, (co*k + ky)*k + kx] = w[co, ci, k-1-ky, k-1-kx]: the kernel of the convolution
/// that maps dy back to dx for a stride-1 same-size conv.
pub(super) fn flip_kernel<T: Real>(g: &ConvGeom, w: &[T], wflip: &mut [T]) {
    let (k, cin, cout) = (g.k, g.cin, g.cout);
    for co in 0..cout {
        for ci in 0..cin {
            for ky in 0..k {
                for kx in 0..k {
                    wflip[ci * cout * k * k + (co * k + ky) * k + kx] =
                        w[((co * cin + ci) * k + (k - 1 - ky)) * k + (k - 1 - kx)];
                }
            }
        }
    }
}
