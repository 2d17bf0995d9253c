//! Mixed precision: matrix products whose operands are rounded to bfloat16 and whose products
//! are accumulated in fp32 (AVX512_BF16's `VDPBF16PS`, twice the fp32 FMA rate). Only the
//! operands of conv and linear products are rounded; everything else (master weights, optimizer
//! moments, normalisation statistics, the loss, gradient reductions) stays fp32.

mod amx;
mod gemm;
mod gemm_avx512;
mod implicit_avx512;
mod implicit_conv;
pub mod layout;
mod portable;
mod strided_input_grad;
mod transpose;
#[cfg(feature = "zmm-model")]
mod zmm_model;

pub use gemm::{matmul, pack_a, pack_b, packed_matmul, Kernel, KernelAsked, PairPacker, RowPacker};
pub use implicit_avx512::BlockRows;
pub use implicit_conv::ImplicitConv;
pub use layout::{PackedA, Src};
pub use strided_input_grad::StridedInputGrad;

use std::fmt;

/// The arithmetic of the conv and linear products.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// fp32 operands and accumulation.
    #[default]
    Fp32,
    /// bf16 operands, fp32 accumulation; needs a CPU with AVX512_BF16 (or
    /// `MDC_BF16_KERNEL=portable`, the slow reference kernel).
    Bf16,
}

impl Precision {
    /// The name in model files, flags, checkpoints and messages (serde and clap spell it the same).
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
        }
    }
}

/// The precision to run at: `asked` when this CPU can, else fp32. bf16 asked for `explicitly`
/// (model file, command line) on a CPU without AVX512_BF16 is an error; as a default (or from a
/// checkpoint written elsewhere) it falls back to fp32 with a one-line note.
///
/// As a default, bf16 also gives way to fp32 where it would be slower (see [`faster_than_fp32`]).
/// `MDC_BF16_KERNEL=portable` runs bf16 on the portable reference kernel on any CPU, with a
/// note that says so.
pub fn resolve(asked: Precision, explicitly: bool) -> Result<(Precision, Option<String>), String> {
    // the fp32 convs' switch is checked here too, where every run's precision is settled
    super::winograd_enabled_by_env()?;
    if asked == Precision::Fp32 {
        return Ok((asked, None));
    }
    let kernel_asked = KernelAsked::from_env()?;
    if let Some(kernel) = kernel_asked.kernel.filter(|k| !k.runs_here()) {
        return Err(format!(
            "MDC_BF16_KERNEL asks for the {} kernel, which this CPU does not run",
            kernel.name()
        ));
    }
    if Kernel::portable_forced() {
        let note = "note: bf16 on the portable reference kernel (MDC_BF16_KERNEL=portable): the \
                    AVX512_BF16 arithmetic in plain Rust, many times slower than fp32";
        return Ok((Precision::Bf16, Some(note.to_string())));
    }
    if !available() {
        let why = "this CPU has no AVX512_BF16 (bf16 products need AMD Zen 4 / Intel Cooper Lake or later)";
        return if explicitly {
            Err(format!(
                "precision \"bf16\": {why}; use \"fp32\" (or MDC_BF16_KERNEL=portable for bf16 on the slow \
                 portable reference kernel)"
            ))
        } else {
            Ok((Precision::Fp32, Some(format!("note: running in fp32: {why}"))))
        };
    }
    if !explicitly && !faster_than_fp32() {
        let why = "this Intel CPU has AVX512_BF16 but no AMX, and there bf16 products are slower than fp32 \
                   (ask for bf16 explicitly to use them anyway)";
        return Ok((Precision::Fp32, Some(format!("note: running in fp32: {why}"))));
    }
    Ok((Precision::Bf16, None))
}

/// Whether bf16 products beat fp32 on this CPU: with AMX tiles (16 times the work of a
/// `VDPBF16PS`), or on AMD (Zen 4 and 5 issue `VDPBF16PS` at twice their fp32 FMA rate). Intel
/// cores without AMX issue it at their fp32 FMA rate, and the conversions make bf16 slower:
/// measured on a 2-core Xeon with AMX (family 6 model 167; README, Benchmarks).
pub fn faster_than_fp32() -> bool {
    available() && (amx::available() || cpu_is_amd())
}

fn cpu_is_amd() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        let id = std::arch::x86_64::__cpuid(0);
        let vendor: Vec<u8> = [id.ebx, id.edx, id.ecx].iter().flat_map(|r| r.to_le_bytes()).collect();
        vendor == b"AuthenticAMD"
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

impl Precision {
    /// The name, with the kernel that runs bf16 products on this CPU and how 3x3 convs run
    /// ("bf16 (AMX-BF16, implicit 3x3 convs)").
    pub fn describe(self) -> String {
        match self {
            Precision::Bf16 => {
                let convs =
                    if Kernel::best().implicit_convs_by_default() { "implicit 3x3 convs" } else { "im2col" };
                format!("bf16 ({}, {convs})", Kernel::best().name())
            }
            Precision::Fp32 => {
                let winograd = super::winograd_enabled_by_env().unwrap_or(true);
                let convs = if winograd { "3x3 convs by Winograd F(2x2, 3x3)" } else { "im2col" };
                format!("fp32 ({convs})")
            }
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether this CPU has the instructions the bf16 kernels use (checked at run time, so the
/// binary stays portable: without them only the portable kernel runs).
pub fn available() -> bool {
    // the zmm routines run on a software model of the instructions (tests on any CPU)
    if cfg!(feature = "zmm-model") {
        return true;
    }
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether the packing and layout routines run their AVX-512 versions: where the CPU has them,
/// unless `MDC_BF16_KERNEL=portable` asks for the portable ones throughout.
fn vector_routines() -> bool {
    // asked per 16 x 16 block and per packed row: answered once
    static VECTOR: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *VECTOR.get_or_init(|| available() && !Kernel::portable_forced())
}

/// `x` rounded to bfloat16 (round to nearest even), as its 16 bits. Like the hardware
/// conversion, subnormal inputs become zero (of the same sign) and NaN stays a quiet NaN.
/// Without branches, so that loops of it vectorise (packing weights converted one value at a
/// time took 1.7x as long).
#[inline]
pub fn to_bf16(x: f32) -> u16 {
    let b = x.to_bits();
    let rounded = b.wrapping_add(0x7fff + ((b >> 16) & 1)) >> 16;
    let nan = (b >> 16) | 0x40;
    let value = if b & 0x7fff_ffff > 0x7f80_0000 { nan } else { rounded };
    // a zero exponent (zero or subnormal) keeps the sign alone
    (if b & 0x7f80_0000 == 0 { (b >> 16) & 0x8000 } else { value }) as u16
}

/// The fp32 value of a bfloat16.
#[inline]
pub fn from_bf16(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// `task(0..tasks)`, on rayon's pool when there are several (one runs here, without a hop).
fn run_tasks(tasks: usize, task: impl Fn(usize) + Sync + Send) {
    if tasks == 1 {
        task(0);
    } else {
        use rayon::prelude::*;
        (0..tasks).into_par_iter().for_each(task);
    }
}

/// A destination pointer handed to parallel tasks that write disjoint parts of it.
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: used only to hand disjoint parts of one destination to parallel tasks.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}
impl SendPtr {
    fn get(self) -> *mut f32 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_to_bf16_is_to_nearest_even() {
        // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1)
        assert_eq!(from_bf16(to_bf16(1.0 + 2f32.powi(-8))), 1.0);
        // 1 + 3 * 2^-8 lies halfway between 1 + 2^-7 and 1 + 2^-6: even is 1 + 2^-6
        assert_eq!(from_bf16(to_bf16(1.0 + 3.0 * 2f32.powi(-8))), 1.0 + 2f32.powi(-6));
        assert_eq!(from_bf16(to_bf16(1.0 + 2f32.powi(-8) + 2f32.powi(-20))), 1.0 + 2f32.powi(-7));
        assert_eq!(from_bf16(to_bf16(-2.5)), -2.5);
        assert!(from_bf16(to_bf16(f32::NAN)).is_nan());
        assert_eq!(from_bf16(to_bf16(f32::INFINITY)), f32::INFINITY);
        assert_eq!(from_bf16(to_bf16(f32::MAX)), f32::INFINITY);
        assert_eq!(from_bf16(to_bf16(-1e-40)).to_bits(), (-0.0f32).to_bits());
    }

    /// The conversion spelt out case by case, as the hardware defines it.
    fn to_bf16_by_cases(x: f32) -> u16 {
        let b = x.to_bits();
        if x.is_nan() {
            return ((b >> 16) | 0x40) as u16;
        }
        if b & 0x7f80_0000 == 0 {
            return (b >> 16) as u16 & 0x8000;
        }
        ((b + 0x7fff + ((b >> 16) & 1)) >> 16) as u16
    }

    #[test]
    fn the_branch_free_conversion_gives_the_bits_of_the_cases() {
        let specials =
            [0.0, -0.0, 1e-40, -1e-40, f32::MIN_POSITIVE, f32::MAX, f32::INFINITY, f32::NAN, -f32::NAN];
        let mut rng = crate::base::rng::Rng::new(5);
        let randoms = (0..100_000).map(|_| f32::from_bits(rng.next_u64() as u32));
        for x in specials.into_iter().chain(randoms) {
            assert_eq!(to_bf16(x), to_bf16_by_cases(x), "{x:e} ({:#010x})", x.to_bits());
        }
    }

    #[test]
    fn resolving_bf16_depends_on_the_cpu_and_on_who_asked() {
        assert_eq!(resolve(Precision::Fp32, true), Ok((Precision::Fp32, None)));
        if available() {
            assert_eq!(resolve(Precision::Bf16, true), Ok((Precision::Bf16, None)));
            let (p, note) = resolve(Precision::Bf16, false).unwrap();
            if faster_than_fp32() {
                assert_eq!((p, note), (Precision::Bf16, None));
            } else {
                assert_eq!(p, Precision::Fp32);
                assert!(note.unwrap().contains("no AMX"));
            }
        } else {
            assert!(resolve(Precision::Bf16, true).unwrap_err().contains("no AVX512_BF16"));
            let (p, note) = resolve(Precision::Bf16, false).unwrap();
            assert_eq!(p, Precision::Fp32);
            assert!(note.unwrap().starts_with("note: running in fp32"));
        }
    }

    #[test]
    fn the_kernel_asked_for_is_read_or_refused_by_name() {
        let asked = KernelAsked::parse("avx512-implicit").unwrap();
        assert_eq!(asked, KernelAsked { kernel: Some(Kernel::Avx512), im2col: false, implicit: true });
        assert!(KernelAsked::parse("portable-im2col").unwrap().im2col);
        let err = KernelAsked::parse("avx-512").unwrap_err();
        assert!(err.contains("\"avx-512\"") && err.contains("avx512-implicit, avx512-im2col"), "{err}");
    }

    #[test]
    fn precision_names_agree_with_serde_and_clap() {
        use clap::ValueEnum;
        for p in [Precision::Fp32, Precision::Bf16] {
            assert_eq!(serde_json::to_string(&p).unwrap(), format!("\"{}\"", p.name()));
            assert_eq!(Precision::from_str(p.name(), false), Ok(p));
        }
    }
}
