//! GFLOP/s of the fp32 (`gemm` crate) and bf16 (own AVX512_BF16 and AMX kernels) matrix products on a
//! 2048^3 product and on the conv products of models/unet-rgb32.toml (per image, 32x32 input).
//! `cargo bench --bench gemm`; medians of repeated runs, on all rayon threads for the big
//! product and one thread for the per-image conv shapes (the interpreter runs one image per
//! thread).

use std::time::Instant;

use mdc::kernels::bf16::{self, Kernel, Src};
use mdc::kernels::{matmul_strided, Tr};

fn median_secs(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[reps / 2]
}

fn row(name: &str, m: usize, n: usize, k: usize, threads: usize, reps: usize) {
    let a: Vec<f32> = (0..m * k).map(|i| ((i * 7 % 13) as f32 - 6.0) / 8.0).collect();
    let b: Vec<f32> = (0..k * n).map(|i| ((i * 5 % 11) as f32 - 5.0) / 8.0).collect();
    let mut c = vec![0f32; m * n];
    let flops = 2.0 * (m * n * k) as f64;
    let fp32 = median_secs(reps, || {
        matmul_strided(&mut c, n, m, n, k, &a, k, Tr::No, &b, n, Tr::No, false, threads)
    });
    let mut line = format!("{name:<28} {m:>5} {n:>5} {k:>5} {:>9.1}", flops / fp32 / 1e9);
    for kernel in kernels() {
        let (mut pa, mut pb) = (Vec::new(), Vec::new());
        let (sa, sb) = (Src { data: &a, ld: k, tr: Tr::No }, Src { data: &b, ld: n, tr: Tr::No });
        let t = median_secs(reps, || {
            bf16::matmul(kernel, &mut c, n, m, n, k, sa, sb, false, threads, (&mut pa, &mut pb))
        });
        // the same with A packed once (how the convs use their weights)
        let packed = bf16::pack_a(m, k, sa, &mut pa);
        let tb = median_secs(reps, || {
            let pbk = bf16::pack_b(k, n, sb, &mut pb, threads);
            bf16::packed_matmul(kernel, &mut c, n, &packed, &pbk, false, threads)
        });
        line += &format!(" {:>9.1} {:>11.1}", flops / t / 1e9, flops / tb / 1e9);
    }
    println!("{line}");
}

fn main() {
    let threads = rayon::current_num_threads();
    let kernels = kernels();
    println!("threads {threads}, bf16 kernels {:?}", kernels.iter().map(|k| k.name()).collect::<Vec<_>>());
    let mut header = format!("{:<28} {:>5} {:>5} {:>5} {:>9}", "GFLOP/s", "m", "n", "k", "fp32");
    for kernel in &kernels {
        let name = &kernel.name()[..kernel.name().len().min(8)];
        header += &format!(" {name:>9} {:>11}", format!("{name} A-pre"));
    }
    println!("{header}");
    row("2048^3 (all threads)", 2048, 2048, 2048, threads, 5);
    // forward: Cout x positions x Cin*9 (one image)
    for (name, cout, pos, kd) in [
        ("fwd 64<-32 @32x32", 64, 1024, 288),
        ("fwd 64<-64 @32x32", 64, 1024, 576),
        ("fwd 128<-128 @16x16", 128, 256, 1152),
        ("fwd 128<-256 @8x8", 128, 64, 2304),
        ("fwd 32<-128 @32x32", 32, 1024, 1152),
    ] {
        row(name, cout, pos, kd, 1, 21);
    }
    // weight gradient dW^T = cols x dY^T: Cin*9 x Cout x positions
    for (name, kd, cout, pos) in [
        ("dW 64<-64 @32x32", 576, 64, 1024),
        ("dW 128<-128 @16x16", 1152, 128, 256),
        ("dW 32<-128 @32x32", 1152, 32, 1024),
    ] {
        row(name, kd, cout, pos, 1, 21);
    }
    // 3x3 same-size convs as implicit GEMMs (one image: pack the image, products, unpad; and
    // the weight gradient's products), on every kernel; "min" columns: the fastest of the runs;
    // "pack W": the weights packed (once per conv per pass, for all images), microseconds
    for &kernel in &kernels {
        println!(
            "{:<28} {:>5} {:>5} {:>5} {:>9} {:>9} {:>9} {:>9} {:>9}",
            format!("implicit 3x3 ({})", kernel.name()),
            "cout",
            "cin",
            "hw",
            "GFLOP/s",
            "products",
            "min",
            "dW prod",
            "pack W us"
        );
        for (cin, cout, hw) in
            [(32, 64, 32), (64, 64, 32), (128, 128, 16), (256, 128, 8), (128, 32, 32), (64, 64, 28)]
        {
            implicit_row(kernel, cin, cout, hw, 1, 21);
        }
        // the downsamples of models/unet-rgb32.toml
        for (cin, cout, hw) in [(32, 32, 32), (64, 64, 16)] {
            implicit_row(kernel, cin, cout, hw, 2, 21);
        }
        for (cin, cout, hw) in [(32, 32, 32), (64, 64, 16)] {
            strided_input_grad_row(kernel, cin, cout, hw, 21);
        }
        if kernel != Kernel::Amx {
            block_rows_sweep(kernel);
        }
    }
}

/// The register blocks' rows measured (`BlockRows`): the products' GFLOP/s (fastest of the
/// runs) of the forward and the weight gradient of two of the model's 3x3 convs, per rows.
fn block_rows_sweep(kernel: Kernel) {
    println!(
        "{:<28} {:>5} {:>5} {:>5} {:>9} {:>9}",
        "  register block rows", "cout", "cin", "hw", "fwd", "dW"
    );
    for (cin, cout, hw) in [(64, 64, 32), (128, 128, 16)] {
        let conv = bf16::ImplicitConv::on(kernel, cin, cout, hw, hw, 1).expect("8+ channel pairs");
        let x: Vec<f32> = (0..cin * hw * hw).map(|i| ((i * 7 % 13) as f32 - 6.0) / 8.0).collect();
        let w: Vec<f32> = (0..cout * cin * 9).map(|i| ((i * 5 % 11) as f32 - 5.0) / 8.0).collect();
        let dy: Vec<f32> = (0..cout * hw * hw).map(|i| ((i * 3 % 7) as f32 - 3.0) / 4.0).collect();
        let (mut wbuf, mut ibuf, mut pbuf, mut dbuf) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let packed_w = conv.pack_weights(&w, &mut wbuf);
        let image = conv.pack_image(&x, &mut ibuf).to_vec();
        let pairs = conv.pack_image_pairs(&x, &mut pbuf).to_vec();
        let dy_rows = conv.pack_output_grad(&dy, &mut dbuf).to_vec();
        let (mut obuf, mut abuf) =
            (vec![0f32; conv.output_len() + 15], vec![0f32; conv.weight_grad_len() + 15]);
        let o0 = obuf.as_ptr().align_offset(64).min(15);
        let a0 = abuf.as_ptr().align_offset(64).min(15);
        let out = &mut obuf[o0..o0 + conv.output_len()];
        let acc = &mut abuf[a0..a0 + conv.weight_grad_len()];
        let flops = 2.0 * (cout * cin * 9 * hw * hw) as f64;
        for rows in [4, 6, 8, 10, 12] {
            let c = conv.with_block_rows(bf16::BlockRows { forward: rows, weight_grad: rows });
            let fwd = min_secs(11, || c.run(&packed_w, &image, out, 1));
            let dw = min_secs(11, || c.add_weight_grad(&pairs, &dy_rows, acc, 1));
            println!(
                "{:<28} {cout:>5} {cin:>5} {hw:>5} {:>9.1} {:>9.1}",
                format!("    {rows} rows"),
                flops / fwd / 1e9,
                flops / dw / 1e9
            );
        }
    }
}

/// The kernels to time: every one this CPU runs, the slow portable one only where it is what
/// bf16 runs on (no AVX512_BF16, or `MDC_BF16_KERNEL=portable`).
fn kernels() -> Vec<Kernel> {
    let all = Kernel::all_available().into_iter();
    all.filter(|&k| k != Kernel::Portable || Kernel::best() == Kernel::Portable).collect()
}

fn min_secs(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn implicit_row(kernel: Kernel, cin: usize, cout: usize, hw: usize, stride: usize, reps: usize) {
    let Some(conv) = bf16::ImplicitConv::on(kernel, cin, cout, hw, hw, stride) else {
        println!("{:<28} implicit convs turned off (MDC_BF16_KERNEL)", "");
        return;
    };
    let x: Vec<f32> = (0..cin * hw * hw).map(|i| ((i * 7 % 13) as f32 - 6.0) / 8.0).collect();
    let w: Vec<f32> = (0..cout * cin * 9).map(|i| ((i * 5 % 11) as f32 - 5.0) / 8.0).collect();
    let (mut wbuf, mut ibuf, mut obuf) = (Vec::new(), Vec::new(), Vec::<f32>::new());
    let ho = hw / stride;
    let mut y = vec![0f32; cout * ho * ho];
    let pack_w = median_secs(reps, || {
        conv.pack_weights(&w, &mut wbuf);
    });
    let packed_w = conv.pack_weights(&w, &mut wbuf);
    // the output on a 64-byte line, as the interpreter's buffers are
    obuf.resize(conv.output_len() + 15, 0f32);
    let start = obuf.as_ptr().align_offset(64).min(15);
    let out = &mut obuf[start..start + conv.output_len()];
    let flops = 2.0 * (cout * cin * 9 * ho * ho) as f64;
    let all = median_secs(reps, || {
        let image = conv.pack_image(&x, &mut ibuf);
        conv.run(&packed_w, image, out, 1);
        conv.unpad(out, None, &mut y);
    });
    let image = conv.pack_image(&x, &mut ibuf).to_vec();
    let products = median_secs(reps, || conv.run(&packed_w, &image, out, 1));
    let fastest = min_secs(reps, || conv.run(&packed_w, &image, out, 1));
    // the weight gradient's products (dy = the output, any values do)
    let (mut pbuf, mut dbuf, mut abuf) = (Vec::new(), Vec::new(), Vec::<f32>::new());
    let pairs = conv.pack_image_pairs(&x, &mut pbuf).to_vec();
    let dy = conv.pack_output_grad(&y, &mut dbuf).to_vec();
    abuf.resize(conv.weight_grad_len() + 15, 0f32);
    let start = abuf.as_ptr().align_offset(64).min(15);
    let acc = &mut abuf[start..start + conv.weight_grad_len()];
    let dw = min_secs(reps, || conv.add_weight_grad(&pairs, &dy, acc, 1));
    println!(
        "{:<28} {cout:>5} {cin:>5} {hw:>5} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
        if stride == 2 { "  stride 2 (downsample)" } else { "" },
        flops / all / 1e9,
        flops / products / 1e9,
        flops / fastest / 1e9,
        flops / dw / 1e9,
        pack_w * 1e6
    );
}

/// A downsample's input gradient on one image and one thread, GFLOP/s (median): its four
/// phases as implicit GEMMs (dy packed, the products, dx written), beside W^T dy + col2im (the
/// bf16 GEMM of `Kernel::best`, as `conv.rs` runs it where the phases do not apply).
fn strided_input_grad_row(kernel: Kernel, cin: usize, cout: usize, hw: usize, reps: usize) {
    let Some(grad) = bf16::StridedInputGrad::on(kernel, cin, cout, hw, hw) else { return };
    let ho = hw / 2;
    let g = mdc::kernels::conv::ConvGeom { cin, cout, k: 3, stride: 2, pad: 1, h: hw, w: hw, ho, wo: ho };
    let w: Vec<f32> = (0..cout * cin * 9).map(|i| ((i * 5 % 11) as f32 - 5.0) / 8.0).collect();
    let dy: Vec<f32> = (0..cout * ho * ho).map(|i| ((i * 3 % 7) as f32 - 3.0) / 4.0).collect();
    let mut dx = vec![0f32; cin * hw * hw];
    let (mut staged_w, mut wbuf, mut dbuf) = (vec![0f32; w.len()], Vec::new(), Vec::new());
    let packed_w = grad.pack_weights(&w, &mut staged_w, &mut wbuf);
    let (mut obuf, mut staging) = (vec![0f32; grad.output_len() + 15], vec![0f32; grad.phase_len()]);
    let start = obuf.as_ptr().align_offset(64).min(15);
    let out = &mut obuf[start..start + grad.output_len()];
    let flops = 2.0 * (cout * cin * 9 * ho * ho) as f64;
    let phases = median_secs(reps, || {
        let image = grad.pack_output_grad(&dy, &mut dbuf);
        grad.run(&packed_w, image, (&mut *out, &mut staging), &mut dx, 1);
    });
    let one_thread = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("a thread pool");
    let mut workers = mdc::kernels::Workers::<f32>::new();
    workers.precision = bf16::Precision::Bf16;
    let im2col = one_thread.install(|| {
        median_secs(reps, || mdc::kernels::conv::input_grad(&mut workers, &g, 1, &w, &dy, &mut dx))
    });
    println!(
        "{:<28} {cout:>5} {cin:>5} {hw:>5} {:>9.1} {:>9.1}   (dx: 4 phases, W^T dy + col2im)",
        "  stride 2 dx",
        flops / phases / 1e9,
        flops / im2col / 1e9
    );
}
