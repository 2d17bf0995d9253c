//! An exported model drives mdc's real samplers through onnxruntime: deterministic DDIM and
//! DPM-Solver++ from the .onnx file alone (schedule and image size from its metadata) gives the same images as the
//! interpreter with the same weights.

use crate::onnx_common;

use std::time::Instant;

use mdc::diffusion::{sample, InterpDenoiser, SampleOptions, Sampler};
use mdc::interp::Executor;
use mdc::runtime::{Device, OrtDenoiser};
use onnx_common::*;

#[test]
fn samplers_through_onnxruntime_match_the_interpreter() {
    if !onnxruntime_available("samplers_through_onnxruntime_match_the_interpreter") {
        return;
    }
    let (name, graph) = shipped_models().into_iter().find(|(n, _)| n == "unet.toml").unwrap();
    let params = random_params(&graph, 21);
    let dir = tempfile::tempdir().unwrap();
    let path = export(&graph, &params, dir.path(), &name);

    let mut ort = OrtDenoiser::open(&path, Device::Cpu).unwrap();
    let schedule = ort.info().schedule.noise_schedule().unwrap();
    let image = ort.info().image();
    let mut interp = InterpDenoiser { executor: Executor::new(graph.clone()), params };
    for sampler in [Sampler::Ddim { steps: 8, eta: 0.0 }, Sampler::DpmSolver2M { steps: 8 }] {
        let opts = SampleOptions { count: 3, batch: 2, sampler, clip_x0: true, seed: 5, guidance: None };
        let start = Instant::now();
        let from_ort = sample(&mut ort, &schedule, image, &opts, &mut |_, _| {}).unwrap();
        let ort_s = start.elapsed().as_secs_f64();
        let from_interp = sample(&mut interp, &schedule, image, &opts, &mut |_, _| {}).unwrap();
        let diff = max_abs_diff(&from_ort, &from_interp);
        eprintln!(
            "{sampler}, 3 images: max |ort - interp| = {diff:.2e}; onnxruntime {:.1} images/s",
            3.0 / ort_s
        );
        assert!(diff <= 1e-3, "{sampler}: images differ by {diff}");
        assert!(from_ort.iter().all(|v| v.is_finite()));
    }
}

/// `mdc sample model.onnx` needs nothing but the .onnx file.
#[test]
fn sample_cli_runs_an_exported_model() {
    if !onnxruntime_available("sample_cli_runs_an_exported_model") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let model = small_model(dir.path());
    let png = dir.path().join("grid.png");
    let mdc = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_mdc"))
            .args(["sample", model.to_str().unwrap(), "-n", "3", "--steps", "4", "-o", png.to_str().unwrap()])
            .args(extra)
            .output()
            .unwrap()
    };
    let o = mdc(&[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    let o = mdc(&["--sampler", "dpmpp2m"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("dpm-solver++(2m) (4 steps)"));

    // CUDA is used or refused with a reason; it never quietly runs on the CPU.
    let o = mdc(&["--device", "cuda"]);
    if !o.status.success() {
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("--device cuda: onnxruntime's CUDA execution provider cannot be used"), "{err}");
    }
}

/// `mdc bench model.onnx`: forward medians at batch 1 and --batch, and sampling throughput.
#[test]
fn bench_cli_times_an_exported_model() {
    if !onnxruntime_available("bench_cli_times_an_exported_model") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let model = small_model(dir.path());
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_mdc"))
        .args([
            "bench",
            model.to_str().unwrap(),
            "--batch",
            "2",
            "--iters",
            "3",
            "--warmup",
            "1",
            "--sample-steps",
            "2",
        ])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}{out}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("forward batch   1: median") && out.contains("forward batch   2: median"), "{out}");
    assert!(out.contains("sampling: DDIM 2 steps, 2 images at once"), "{out}");
}
