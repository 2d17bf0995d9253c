//! Benchmarks the interpreter on the built-in mini U-Net (RGB 32x32 by default, the
//! `models/unet-rgb32.toml` architecture) until `mdc bench MODEL` can load model files.
//! Usage: cargo run --release --example bench_interp -- [batch] [train_batch] [iters] [grey]

use mdc::bench::{run, BenchOptions};
use mdc::graph::blocks::mini_unet;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, default: usize| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(default);
    let grey = args.iter().any(|a| a == "grey");
    let graph = if grey {
        mini_unet(1, 28, [32, 64, 128, 128], 8, 32, 128)
    } else {
        mini_unet(3, 32, [32, 64, 128, 128], 8, 32, 128)
    }
    .expect("the built-in model checks");
    let opts = BenchOptions {
        batch: num(0, 8),
        train_batch: num(1, 32),
        iters: num(2, 10),
        ..BenchOptions::default()
    };
    println!("{}", run(&graph, &opts));
}
