//! A software model of the AVX-512 intrinsics the zmm routines use (`gemm_avx512.rs`,
//! `implicit_avx512.rs`, `transpose.rs`), built in place of `std::arch` with the `zmm-model`
//! feature: the routines' own code (their loops, offsets, masks, permutations and register
//! blocks) then runs, and is tested, on any CPU.
//!
//! Each function follows Intel's pseudo-code for its instruction, lane by lane: masked loads and
//! stores touch only the lanes their mask selects (the hardware suppresses faults on the others),
//! aligned loads check their alignment (the hardware faults), and the bf16 arithmetic is the
//! portable kernel's (`VDPBF16PS`: the high pair's product added first, then the low one, each
//! rounded to nearest even with denormals flushed; `VCVTNE2PS2BF16`: round to nearest even, the
//! second operand in the low half). What this cannot show is that the hardware agrees with the
//! pseudo-code: on an AVX512_BF16 CPU the real build's tests compare the zmm routines with the
//! portable ones word for word.
#![allow(non_camel_case_types)]

use super::portable::dot_pair;
use super::to_bf16;

/// 16 fp32 lanes.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
pub struct __m512(pub [f32; 16]);
/// 512 bits as 16 32-bit lanes (or 32 16-bit ones, see [`words`]).
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
pub struct __m512i(pub [u32; 16]);
/// 32 bf16 lanes.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
pub struct __m512bh(pub [u16; 32]);
/// 16 bf16 lanes.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(32))]
pub struct __m256bh(pub [u16; 16]);
/// 256 bits as 16 16-bit lanes.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(32))]
pub struct __m256i(pub [u16; 16]);
pub type __mmask16 = u16;

/// The 16-bit lanes of a 512-bit value (lane 2i is the low half of 32-bit lane i).
fn words(v: __m512i) -> [u16; 32] {
    std::array::from_fn(|i| (v.0[i / 2] >> (16 * (i % 2))) as u16)
}

fn from_words(w: [u16; 32]) -> __m512i {
    __m512i(std::array::from_fn(|i| w[2 * i] as u32 | (w[2 * i + 1] as u32) << 16))
}

fn selected(k: __mmask16, lane: usize) -> bool {
    k >> lane & 1 == 1
}

pub fn _mm512_setzero_ps() -> __m512 {
    __m512([0.0; 16])
}

pub fn _mm512_setzero_si512() -> __m512i {
    __m512i([0; 16])
}

pub fn _mm512_set1_ps(a: f32) -> __m512 {
    __m512([a; 16])
}

pub fn _mm512_set1_epi32(a: i32) -> __m512i {
    __m512i([a as u32; 16])
}

pub fn _mm512_castsi512_ps(a: __m512i) -> __m512 {
    __m512(a.0.map(f32::from_bits))
}

pub fn _mm512_add_ps(a: __m512, b: __m512) -> __m512 {
    __m512(std::array::from_fn(|i| a.0[i] + b.0[i]))
}

/// `VDPBF16PS`: lane i of src + the dot product of bf16 pairs 2i + 1 and 2i of a and b.
pub fn _mm512_dpbf16_ps(src: __m512, a: __m512bh, b: __m512bh) -> __m512 {
    let pair = |v: &__m512bh, i: usize| v.0[2 * i] as u32 | (v.0[2 * i + 1] as u32) << 16;
    __m512(std::array::from_fn(|i| dot_pair(src.0[i], pair(&a, i), pair(&b, i))))
}

/// `VCVTNE2PS2BF16`: b's 16 values in the low lanes, a's in the high ones.
pub fn _mm512_cvtne2ps_pbh(a: __m512, b: __m512) -> __m512bh {
    __m512bh(std::array::from_fn(|i| if i < 16 { to_bf16(b.0[i]) } else { to_bf16(a.0[i - 16]) }))
}

/// `VCVTNEPS2BF16`: 16 values to bf16.
pub fn _mm512_cvtneps_pbh(a: __m512) -> __m256bh {
    __m256bh(a.0.map(to_bf16))
}

/// `VPERMW`: 16-bit lane i = a's lane idx[i] mod 32.
pub fn _mm512_permutexvar_epi16(idx: __m512i, a: __m512i) -> __m512i {
    let (idx, a) = (words(idx), words(a));
    from_words(std::array::from_fn(|i| a[idx[i] as usize % 32]))
}

/// `VPERMT2D`: 32-bit lane i = lane idx[i] mod 16 of a (bit 4 of idx[i] clear) or of b (set).
pub fn _mm512_permutex2var_epi32(a: __m512i, idx: __m512i, b: __m512i) -> __m512i {
    __m512i(std::array::from_fn(|i| {
        let j = idx.0[i] as usize;
        if j & 16 == 0 {
            a.0[j % 16]
        } else {
            b.0[j % 16]
        }
    }))
}

/// # Safety
/// `p` readable for the selected lanes.
pub unsafe fn _mm512_maskz_loadu_ps(k: __mmask16, p: *const f32) -> __m512 {
    __m512(std::array::from_fn(|i| if selected(k, i) { p.add(i).read_unaligned() } else { 0.0 }))
}

/// # Safety
/// `p` readable for the selected lanes.
pub unsafe fn _mm512_maskz_loadu_epi32(k: __mmask16, p: *const i32) -> __m512i {
    __m512i(std::array::from_fn(|i| if selected(k, i) { p.add(i).read_unaligned() as u32 } else { 0 }))
}

/// # Safety
/// `p` readable for 64 bytes.
pub unsafe fn _mm512_loadu_si512(p: *const __m512i) -> __m512i {
    let p = p.cast::<u32>();
    __m512i(std::array::from_fn(|i| p.add(i).read_unaligned()))
}

/// # Safety
/// `p` readable for 16 floats.
pub unsafe fn _mm512_loadu_ps(p: *const f32) -> __m512 {
    __m512(std::array::from_fn(|i| p.add(i).read_unaligned()))
}

/// # Safety
/// `p` readable for 16 floats, on a 64-byte line (the instruction faults elsewhere: so does this).
pub unsafe fn _mm512_load_ps(p: *const f32) -> __m512 {
    assert!(p.cast::<u8>().align_offset(64) == 0, "_mm512_load_ps of {p:?}, not on a 64-byte line");
    _mm512_loadu_ps(p)
}

/// # Safety
/// `p` writable for 64 bytes.
pub unsafe fn _mm512_storeu_si512(p: *mut __m512i, a: __m512i) {
    let p = p.cast::<u32>();
    for (i, &v) in a.0.iter().enumerate() {
        p.add(i).write_unaligned(v);
    }
}

/// # Safety
/// `p` writable for 16 floats.
pub unsafe fn _mm512_storeu_ps(p: *mut f32, a: __m512) {
    for (i, &v) in a.0.iter().enumerate() {
        p.add(i).write_unaligned(v);
    }
}

/// # Safety
/// `p` writable for the selected lanes.
pub unsafe fn _mm512_mask_storeu_ps(p: *mut f32, k: __mmask16, a: __m512) {
    for (i, &v) in a.0.iter().enumerate().filter(|&(i, _)| selected(k, i)) {
        p.add(i).write_unaligned(v);
    }
}

/// # Safety
/// `p` writable for the selected lanes.
pub unsafe fn _mm512_mask_storeu_epi32(p: *mut i32, k: __mmask16, a: __m512i) {
    for (i, &v) in a.0.iter().enumerate().filter(|&(i, _)| selected(k, i)) {
        p.add(i).write_unaligned(v as i32);
    }
}

/// # Safety
/// `p` writable for the selected 16-bit lanes.
pub unsafe fn _mm256_mask_storeu_epi16(p: *mut i16, k: __mmask16, a: __m256i) {
    for (i, &v) in a.0.iter().enumerate().filter(|&(i, _)| selected(k, i)) {
        p.add(i).write_unaligned(v as i16);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lane orders the routines rely on, from Intel's definitions: the second operand of
    /// the two-vector conversion in the low lanes; 16-bit lane 2i the low half of 32-bit lane i.
    #[test]
    fn conversions_and_permutations_place_lanes_as_intel_defines() {
        let a = __m512(std::array::from_fn(|i| i as f32 + 100.0));
        let b = __m512(std::array::from_fn(|i| -(i as f32) - 1.0));
        let c = _mm512_cvtne2ps_pbh(a, b);
        assert_eq!(c.0[0], to_bf16(-1.0));
        assert_eq!(c.0[16], to_bf16(100.0));
        let w = from_words(c.0);
        assert_eq!(w.0[0], to_bf16(-1.0) as u32 | (to_bf16(-2.0) as u32) << 16);
        let reversed = from_words(std::array::from_fn(|i| 31 - i as u16));
        assert_eq!(words(_mm512_permutexvar_epi16(reversed, w))[0], c.0[31]);
        let x = __m512i(std::array::from_fn(|i| i as u32));
        let y = __m512i(std::array::from_fn(|i| 100 + i as u32));
        let idx = __m512i(std::array::from_fn(|i| if i % 2 == 0 { i as u32 / 2 } else { 16 + i as u32 / 2 }));
        let z = _mm512_permutex2var_epi32(x, idx, y);
        assert_eq!(&z.0[..4], &[0, 100, 1, 101]);
    }

    #[test]
    fn masked_stores_touch_only_their_lanes() {
        let mut out = [7f32; 16];
        // SAFETY: 16 floats
        unsafe { _mm512_mask_storeu_ps(out.as_mut_ptr(), 0b101, _mm512_set1_ps(1.0)) };
        assert_eq!(&out[..4], &[1.0, 7.0, 1.0, 7.0]);
    }
}
