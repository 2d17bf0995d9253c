//! The bf16 matrix product against the fp32 one.
//!
//! Error bound. Rounding an operand to bf16 (8 significant bits, round to nearest) changes it by
//! a relative error of at most u = 2^-8, so each product a*b picks up at most (2u + u^2)|a||b|.
//! The products are summed in fp32 (u32 = 2^-24) by both kernels in some order, each adding at
//! most K * u32 * sum|a||b| (the classic gamma_K bound). So, element by element,
//!   |C_bf16 - C_fp32| <= (2u + u^2 + 2 K u32) * S,   S = sum_k |a_ik| |b_kj|,
//! computed here with S from the fp32 kernel on |A| and |B| (plus a hair for S's own rounding).
//! Were the sum kept in bf16, a long reduction would lose every term below half an ulp of the
//! running sum; `long_reductions_accumulate_in_fp32` catches that.

use mdc::base::rng::Rng;
use mdc::kernels::bf16::{self, Kernel, Src};
use mdc::kernels::{matmul_strided, Tr};

const U_BF16: f64 = 1.0 / 256.0;
const U_F32: f64 = 1.0 / 16_777_216.0;

fn random(rng: &mut Rng, len: usize) -> Vec<f32> {
    (0..len).map(|_| rng.normal() as f32).collect()
}

struct Case {
    m: usize,
    n: usize,
    k: usize,
    ta: Tr,
    tb: Tr,
    /// dst row stride beyond n (a band of a wider matrix)
    pad: usize,
    accumulate: bool,
    threads: usize,
    kernel: Kernel,
}

/// Runs one case through the fp32 and a bf16 kernel and checks the bound on every element.
fn check(case: &Case, seed: u64) {
    let Case { m, n, k, ta, tb, pad, accumulate, threads, kernel } = *case;
    let mut rng = Rng::new(seed);
    let (a, b) = (random(&mut rng, m * k), random(&mut rng, k * n));
    let lda = if ta == Tr::No { k } else { m };
    let ldb = if tb == Tr::No { n } else { k };
    let ldd = n + pad;
    let start = random(&mut rng, m * ldd);
    let mut want = start.clone();
    matmul_strided(&mut want, ldd, m, n, k, &a, lda, ta, &b, ldb, tb, accumulate, 1);
    let abs = |v: &[f32]| v.iter().map(|x| x.abs()).collect::<Vec<_>>();
    let mut s = vec![0f32; m * ldd];
    matmul_strided(&mut s, ldd, m, n, k, &abs(&a), lda, ta, &abs(&b), ldb, tb, false, 1);
    let mut got = start.clone();
    // packing buffers left dirty by a bigger product: the padding must be rewritten
    let (mut pa, mut pb) =
        (vec![0x3f80_3f80; 2 * (m + 16) * (k + 32)], vec![0x3f80_3f80; 2 * (n + 32) * (k + 32)]);
    bf16::matmul(
        kernel,
        &mut got,
        ldd,
        m,
        n,
        k,
        Src { data: &a, ld: lda, tr: ta },
        Src { data: &b, ld: ldb, tr: tb },
        accumulate,
        threads,
        (&mut pa, &mut pb),
    );
    let rel = 2.0 * U_BF16 + U_BF16 * U_BF16 + 2.0 * (k as f64 + 2.0) * U_F32;
    for i in 0..m {
        for j in 0..ldd {
            let e = i * ldd + j;
            if j >= n {
                assert_eq!(
                    got[e].to_bits(),
                    start[e].to_bits(),
                    "({i}, {j}) outside the product was written"
                );
                continue;
            }
            let bound = rel * s[e] as f64 * (1.0 + 1e-6) + 1e-30;
            let err = (got[e] as f64 - want[e] as f64).abs();
            assert!(
                err <= bound,
                "{kernel:?} m={m} n={n} k={k} {ta:?} {tb:?}: ({i}, {j}) bf16 {} fp32 {} differ by {err:e} > {bound:e}",
                got[e],
                want[e]
            );
        }
    }
}

#[test]
fn bf16_matmul_is_within_the_rounding_bound_of_fp32() {
    eprintln!("bf16 kernels on this CPU: {:?}", Kernel::all_available());
    let mut seed = 0;
    // sizes around the micro-kernels (AVX-512: 12 x 32, AMX: 32 x 32 in tiles of 16 rows and 16
    // pairs of k) and cache blocks (256 pairs, 128 rows), odd k
    let sizes = [
        (1, 1, 1),
        (12, 32, 2),
        (13, 33, 3),
        (7, 70, 513),
        (130, 40, 600),
        (32, 1024, 288),
        (5, 3, 1100),
        (16, 16, 32),
        (17, 31, 33),
        (48, 64, 64),
    ];
    for kernel in Kernel::all_available() {
        for (m, n, k) in sizes {
            for (ta, tb) in [(Tr::No, Tr::No), (Tr::Yes, Tr::No), (Tr::No, Tr::Yes), (Tr::Yes, Tr::Yes)] {
                // a whole 32 x 32 block of C goes straight through the AMX tiles: both ways
                for (pad, accumulate) in [(0, false), (5, true), (0, true)] {
                    seed += 1;
                    check(&Case { m, n, k, ta, tb, pad, accumulate, threads: 1, kernel }, seed);
                }
            }
        }
    }
}

#[test]
fn bf16_matmul_splits_over_threads_with_identical_results() {
    eprintln!("bf16 kernels on this CPU: {:?}", Kernel::all_available());
    let (m, n, k) = (40, 200, 300);
    for kernel in Kernel::all_available() {
        let case = Case { m, n, k, ta: Tr::No, tb: Tr::No, pad: 3, accumulate: true, threads: 3, kernel };
        check(&case, 7);
        let mut rng = Rng::new(8);
        let (a, b) = (random(&mut rng, m * k), random(&mut rng, k * n));
        let run = |threads| {
            let mut d = vec![0f32; m * n];
            let (mut pa, mut pb) = (Vec::new(), Vec::new());
            let (sa, sb) = (Src { data: &a, ld: k, tr: Tr::No }, Src { data: &b, ld: n, tr: Tr::No });
            bf16::matmul(kernel, &mut d, n, m, n, k, sa, sb, false, threads, (&mut pa, &mut pb));
            d
        };
        assert_eq!(run(1), run(4), "{kernel:?}: each element is summed in the same order whatever the split");
    }
}

#[test]
fn long_reductions_accumulate_in_fp32() {
    eprintln!("bf16 kernels on this CPU: {:?}", Kernel::all_available());
    // 1 followed by 4095 terms of 2^-9 (all exact in bf16): in bf16, 1 + 2^-9 rounds back to 1
    // and the sum would stay 1; in fp32 every partial sum is exact: 1 + 4095/512.
    let k = 4096;
    let mut a: Vec<f32> = vec![2f32.powi(-9); k];
    a[0] = 1.0;
    let b = vec![1f32; k * 16];
    for kernel in Kernel::all_available() {
        let mut d = vec![0f32; 16];
        let (mut pa, mut pb) = (Vec::new(), Vec::new());
        let (sa, sb) = (Src { data: &a, ld: k, tr: Tr::No }, Src { data: &b, ld: 16, tr: Tr::No });
        bf16::matmul(kernel, &mut d, 16, 1, 16, k, sa, sb, false, 1, (&mut pa, &mut pb));
        let exact = 1.0 + 4095.0 / 512.0;
        assert!(d.iter().all(|&v| v == exact), "{kernel:?}: expected {exact} in every column, found {d:?}");
        // and across cache blocks of k (the partial sums meet in fp32 C as well): all ones
        let ones = vec![1f32; k];
        let sa = Src { data: &ones, ld: k, tr: Tr::No };
        bf16::matmul(kernel, &mut d, 16, 1, 16, k, sa, sb, false, 1, (&mut pa, &mut pb));
        assert!(d.iter().all(|&v| v == k as f32), "{kernel:?}: expected {k}, found {d:?}");
    }
}

#[test]
fn a_packed_operand_is_reused_across_products() {
    eprintln!("bf16 kernels on this CPU: {:?}", Kernel::all_available());
    let (m, n, k) = (20, 50, 70);
    let mut rng = Rng::new(3);
    let a = random(&mut rng, m * k);
    let (b1, b2) = (random(&mut rng, k * n), random(&mut rng, k * n));
    let (mut pa, mut pb, mut pa2) = (Vec::new(), Vec::new(), Vec::new());
    let packed = bf16::pack_a(m, k, Src { data: &a, ld: k, tr: Tr::No }, &mut pa);
    for b in [&b1, &b2] {
        let mut once = vec![0f32; m * n];
        let pbk = bf16::pack_b(k, n, Src { data: b, ld: n, tr: Tr::No }, &mut pb, 1);
        bf16::packed_matmul(Kernel::best(), &mut once, n, &packed, &pbk, false, 1);
        let mut fresh = vec![0f32; m * n];
        let (sa, sb) = (Src { data: &a, ld: k, tr: Tr::No }, Src { data: b, ld: n, tr: Tr::No });
        bf16::matmul(Kernel::best(), &mut fresh, n, m, n, k, sa, sb, false, 1, (&mut pa2, &mut pb));
        assert_eq!(once, fresh);
    }
}
