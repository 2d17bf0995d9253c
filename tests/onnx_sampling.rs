//! An exported model drives mdc's real samplers through onnxruntime: deterministic DDIM and
//! DPM-Solver++ from the .onnx file alone (schedule and image size from its metadata) gives the same images as the
//! interpreter with the same weights.

use crate::onnx_common;

use std::time::Instant;

use mdc::diffusion::{sample, AutoGuided, Denoiser, Prediction, SampleOptions, Sampler, Steering};
use mdc::interp::{Executor, InterpDenoiser};
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
    let mut interp = InterpDenoiser { executor: Executor::new(graph.clone()), params: params.clone() };
    // The sampler reads what the output means from the export's metadata.
    for (prediction, sampler) in [
        (Prediction::Noise, Sampler::Ddim { steps: 8, eta: 0.0 }),
        (Prediction::Noise, Sampler::DpmSolver2M { steps: 8 }),
        (Prediction::Velocity, Sampler::Ddim { steps: 8, eta: 0.0 }),
    ] {
        let mut info = info_for(&graph);
        info.schedule.prediction = prediction;
        let path = dir.path().join(format!("{name}-{prediction}.onnx"));
        mdc::onnx::export_to_file(&graph, &params, None, &info, &path).unwrap();
        let mut ort = OrtDenoiser::open(&path, Device::Cpu).unwrap();
        assert_eq!(ort.info().schedule.prediction, prediction);
        let schedule = ort.info().schedule.noise_schedule().unwrap();
        let image = ort.info().image();
        let opts = SampleOptions {
            count: 3,
            batch: 2,
            sampler,
            clip_x0: true,
            prediction: ort.info().schedule.prediction,
            seed: 5,
            guidance: None,
        };
        let start = Instant::now();
        let from_ort = sample(&mut ort, &schedule, image, &opts, &mut |_, _| {}).unwrap();
        let ort_s = start.elapsed().as_secs_f64();
        let from_interp = sample(&mut interp, &schedule, image, &opts, &mut |_, _| {}).unwrap();
        let diff = max_abs_diff(&from_ort, &from_interp);
        eprintln!(
            "{prediction} {sampler}, 3 images: max |ort - interp| = {diff:.2e}; onnxruntime {:.1} images/s",
            3.0 / ort_s
        );
        assert!(diff <= 1e-3, "{prediction} {sampler}: images differ by {diff}");
        assert!(from_ort.iter().all(|v| v.is_finite()));
    }
}

/// A checkpoint that keeps a guide exports with autoguidance built in: both networks in one file,
/// the output guide + w (model - guide) as the interpreter computes it, the weight and the
/// guide's step in the metadata, and `mdc sample` says so and refuses another weight.
#[test]
fn an_autoguided_export_matches_the_interpreter_and_says_so() {
    if !onnxruntime_available("an_autoguided_export_matches_the_interpreter_and_says_so") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let model = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/models/unet-cond.toml"));
    let loaded = mdc::model::load(model).unwrap();
    let graph = loaded.graph.clone();
    let guide = random_params(&graph, 5);
    let config = mdc::train::TrainConfig { autoguidance: 2.5, ..Default::default() };
    let kept = mdc::train::Guide { step: 10, weights: guide.clone() };
    let ck = random_checkpoint(&graph, &loaded.hash, 40, config, Some(kept));
    let ema = ck.ema.clone();
    let ckpt = dir.path().join("checkpoint.safetensors");
    ck.save(&ckpt).unwrap();
    let onnx = dir.path().join("guided.onnx");
    let mdc =
        |args: &[&str]| std::process::Command::new(env!("CARGO_BIN_EXE_mdc")).args(args).output().unwrap();
    let export = |out: &std::path::Path, extra: &[&str]| {
        let mut args = vec!["export", "onnx", model.to_str().unwrap(), "--weights", ckpt.to_str().unwrap()];
        args.extend(extra);
        args.extend(["-o", out.to_str().unwrap()]);
        mdc(&args)
    };
    let o = export(&onnx, &[]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("autoguidance 2.5 built in") && stdout.contains("step 10"), "{stdout}");

    let mut ort = OrtDenoiser::open(&onnx, Device::Cpu).unwrap();
    let info = ort.info().clone();
    assert_eq!(
        info.autoguidance,
        Some(mdc::onnx::AutoguidanceInfo { steering: Steering::everywhere(2.5), guide_step: 10 })
    );
    let x = random_images(3, 1, 28, 28, 9);
    let t = [3.0, 500.0, 999.0];
    let y = [0, 7, 10];
    let from_ort = ort.predict_noise(&x, &t, Some(&y)).unwrap();
    let mut model_den = InterpDenoiser { executor: Executor::new(graph.clone()), params: ema };
    let mut guide_den = InterpDenoiser { executor: Executor::new(graph.clone()), params: guide };
    let mut guided =
        AutoGuided { model: &mut model_den, guide: &mut guide_den, steering: Steering::everywhere(2.5) };
    let from_interp = guided.predict_noise(&x, &t, Some(&y)).unwrap();
    let plain = guided.model.predict_noise(&x, &t, Some(&y)).unwrap();
    let diff = max_abs_diff(&from_ort, &from_interp);
    assert!(diff <= 1e-3, "guided outputs differ by {diff}");
    assert!(max_abs_diff(&from_ort, &plain) > 0.05, "the export must not be the model alone");

    let png = dir.path().join("g.png");
    let sample = |extra: &[&str]| {
        let mut args = vec![
            "sample",
            onnx.to_str().unwrap(),
            "-n",
            "2",
            "--steps",
            "3",
            "--class",
            "1",
            "-o",
            png.to_str().unwrap(),
            "-q",
        ];
        args.extend(extra);
        mdc(&args)
    };
    let o = sample(&[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("autoguidance 2.5 (built in)"));
    let o = sample(&["--autoguidance", "2"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("has autoguidance 2.5 built in"));

    // `--autoguidance-max-t 500`: the image at t = 999 has the null label and gets the model
    // alone, the others are steered, as in the interpreter.
    let below = dir.path().join("below.onnx");
    let o = export(&below, &["--autoguidance-max-t", "500"]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("autoguidance 2.5 at t <= 500 built in"), "{stdout}");
    let mut ort = OrtDenoiser::open(&below, Device::Cpu).unwrap();
    assert_eq!(ort.info().autoguidance.as_ref().and_then(|a| a.steering.max_t), Some(500));
    let from_ort = ort.predict_noise(&x, &t, Some(&y)).unwrap();
    guided.steering.max_t = Some(500);
    let from_interp = guided.predict_noise(&x, &t, Some(&y)).unwrap();
    assert!(
        max_abs_diff(&from_ort, &from_interp) <= 1e-3,
        "differ by {}",
        max_abs_diff(&from_ort, &from_interp)
    );
    let image = |a: &ndarray::Array4<f32>, i: usize| a.slice(ndarray::s![i..i + 1, .., .., ..]).to_owned();
    assert!(max_abs_diff(&image(&from_ort, 2), &image(&plain, 2)) <= 1e-3, "t = 999 is above max_t");
    assert!(max_abs_diff(&image(&from_ort, 1), &image(&plain, 1)) > 0.05, "t = 500 is steered");
    // Above the limit an image with a label is still steered.
    let late = [999.0; 3];
    let from_ort = ort.predict_noise(&x, &late, Some(&y)).unwrap();
    let from_interp = guided.predict_noise(&x, &late, Some(&y)).unwrap();
    assert!(
        max_abs_diff(&from_ort, &from_interp) <= 1e-3,
        "differ by {}",
        max_abs_diff(&from_ort, &from_interp)
    );
    let plain_late = guided.model.predict_noise(&x, &late, Some(&y)).unwrap();
    assert!(max_abs_diff(&image(&from_ort, 0), &image(&plain_late, 0)) > 0.05, "label 0 is steered");
    assert!(max_abs_diff(&image(&from_ort, 2), &image(&plain_late, 2)) <= 1e-3, "the null label is not");
    let sample_below = |extra: &[&str]| {
        let mut args = vec!["sample", below.to_str().unwrap(), "-n", "1", "--steps", "2", "-o"];
        args.extend([png.to_str().unwrap(), "-q"]);
        args.extend(extra);
        mdc(&args)
    };
    assert!(String::from_utf8_lossy(&sample_below(&[]).stdout)
        .contains("autoguidance 2.5 at t <= 500 (built in)"));
    let o = sample_below(&["--autoguidance-max-t", "600"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("export it again with --autoguidance-max-t 600"));

    // `--autoguidance 1` exports the model alone.
    let alone = dir.path().join("alone.onnx");
    let o = export(&alone, &["--autoguidance", "1"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut ort = OrtDenoiser::open(&alone, Device::Cpu).unwrap();
    assert_eq!(ort.info().autoguidance, None);
    assert!(max_abs_diff(&ort.predict_noise(&x, &t, Some(&y)).unwrap(), &plain) <= 1e-3);
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
