//! The compiled training step on onnxruntime's CPU provider against the interpreter: one step of
//! every shipped model (parameters, AdamW moments, EMA, loss, gradient norm within 1e-5
//! relative), with clipping active, noise and velocity targets, min-SNR weights and the
//! conditional model's label dropout; 30 steps of models/unet.toml end within 1e-3; a checkpoint
//! resumes on the other engine; the step graph passes `onnx.checker`.

use crate::onnx_common;

use std::path::Path;

use mdc::base::rng::Rng;
use mdc::data::{Dataset, Labels};
use mdc::diffusion::{NoiseSchedule, Prediction};
use mdc::graph::Graph;
use mdc::interp::Executor;
use mdc::kernels::bf16::Precision;
use mdc::params::Params;
use mdc::runtime::step_session::StepOptions;
use mdc::train::{
    step_recipe, train, Checkpoint, LabelDropout, OrtSteps, TrainConfig, TrainEngine, TrainJob, TrainState,
    CHECKPOINT_FILE,
};
use ndarray::Array4;
use prost::Message;

const HASH: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// ||a - b|| / ||b|| per tensor, the worst over `a`'s tensors, and which.
fn worst(a: &Params, b: &Params) -> (f64, String) {
    let mut out = (0.0, String::new());
    for ((name, x), y) in a.names.iter().zip(&a.tensors).zip(&b.tensors) {
        let d: f64 = x.iter().zip(y).map(|(&p, &q)| (p as f64 - q as f64).powi(2)).sum::<f64>().sqrt();
        let n: f64 = y.iter().map(|&q| (q as f64).powi(2)).sum::<f64>().sqrt();
        let r = d / n.max(1e-12);
        if r > out.0 {
            out = (r, name.clone());
        }
    }
    out
}

/// ||a - b|| / ||b|| over all tensors together (the flat state vector).
fn whole(a: &Params, b: &Params) -> f64 {
    let pairs = a.tensors.iter().zip(&b.tensors).flat_map(|(x, y)| x.iter().zip(y.iter()));
    let (d, n) = pairs
        .fold((0.0, 0.0), |(d, n), (&p, &q)| (d + (p as f64 - q as f64).powi(2), n + (q as f64).powi(2)));
    (d / n).sqrt()
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-12)
}

/// `count` random images of the model's input shape in [-1, 1], labelled 0, 1, 2, ... cyclically.
fn data(graph: &Graph, count: usize, seed: u64) -> Dataset {
    let (c, h, w) = graph.input_shape().as_image().unwrap();
    let mut rng = Rng::new(seed);
    let images = Array4::from_shape_simple_fn((count, c, h, w), || rng.uniform_range(-1.0, 1.0) as f32);
    let mut d = Dataset::new(images, "random");
    let classes = graph.classes().unwrap_or(1) as u32;
    d.labels = Some(Labels::numbered((0..count as u32).map(|i| i % classes).collect(), "cyclic"));
    d
}

fn cpu() -> StepOptions {
    StepOptions { threads: Some(2), ..StepOptions::default() }
}

/// One step on both engines from the same fresh state: everything the step changes must agree.
fn one_step(name: &str, graph: &Graph, cfg: &TrainConfig, drop: Option<f64>, opts: StepOptions, tol: f64) {
    let data = data(graph, 12, 3);
    let schedule = NoiseSchedule::new(cfg.schedule, cfg.timesteps);
    let dropout = graph.classes().zip(drop).map(|(c, d)| LabelDropout { null: c as u32, drop: d });
    let mut interp = TrainState::fresh(graph, cfg, data.len());
    let mut exec = Executor::new(graph.clone()).with_precision(Precision::Fp32);
    let mut grads = interp.params.zeros_like();
    let want = interp.step(&mut exec, &mut grads, &data, &schedule, cfg, dropout).ok().expect("finite step");
    let mut ort = TrainState::fresh(graph, cfg, data.len());
    let mut steps = OrtSteps::open(graph, cfg, opts, &ort).unwrap();
    let got = steps.step(&mut ort, &data, &schedule, cfg, dropout).unwrap().ok().expect("finite step");
    steps.sync(&mut ort).unwrap();
    assert!(cfg.clip_grad <= 0.0 || want.grad_norm > cfg.clip_grad, "{name}: clipping is not active");
    eprintln!(
        "{name}: loss {:.2e}, grad norm {:.2e} relative",
        rel(got.loss, want.loss),
        rel(got.grad_norm, want.grad_norm)
    );
    // The moments carry the gradients: compared tensor by tensor. The weights and their EMA as the
    // flat state vectors: one AdamW step moves each weight by lr * g / (|g| + eps), which for the
    // few gradients near eps (zero-initialised GroupNorm biases under clipping) swings with any
    // rounding, so a tensor of such weights alone would measure the optimizer's conditioning, not
    // the step's.
    for (what, a, b) in [("adam_m", &ort.opt.m, &interp.opt.m), ("adam_v", &ort.opt.v, &interp.opt.v)] {
        let (r, tensor) = worst(a, b);
        eprintln!("{name}: {what} worst relative L2 {r:.2e} ({tensor})");
        assert!(r <= tol, "{name}: {what} differ by {r:.2e} relative in {tensor}");
    }
    for (what, a, b) in [("parameters", &ort.params, &interp.params), ("ema", &ort.ema, &interp.ema)] {
        let (r, tensor) = worst(a, b);
        let all = whole(a, b);
        eprintln!("{name}: {what} relative L2 {all:.2e} (worst tensor {r:.2e}, {tensor})");
        assert!(all <= tol, "{name}: {what} differ by {all:.2e} relative");
    }
    assert!(rel(got.loss, want.loss) <= tol, "{name}: loss {} vs {}", got.loss, want.loss);
    assert!(
        rel(got.grad_norm, want.grad_norm) <= tol,
        "{name}: grad norm {} vs {}",
        got.grad_norm,
        want.grad_norm
    );
    assert_eq!((ort.step, ort.opt.t), (interp.step, interp.opt.t));
    assert_eq!(ort.rng.state(), interp.rng.state(), "{name}: both engines drew the same batch");
}

#[test]
fn one_step_matches_the_interpreter_on_every_shipped_model() {
    if !onnx_common::onnxruntime_available("one_step_matches_the_interpreter_on_every_shipped_model") {
        return;
    }
    every_shipped_model(cpu(), 1e-5);
}

/// On CUDA (TF32 off), where cuDNN's algorithms sum in other orders: run by scripts/gpu-check.sh
/// with MDC_TEST_CUDA=1, skipped otherwise.
#[test]
fn cuda_one_step_matches_the_interpreter_on_every_shipped_model() {
    if std::env::var_os("MDC_TEST_CUDA").is_none() {
        return eprintln!(
            "NOTICE: skipping the CUDA step test (set MDC_TEST_CUDA=1 on a machine with a GPU)"
        );
    }
    let opts = StepOptions { device: mdc::runtime::Device::Cuda, ..StepOptions::default() };
    every_shipped_model(opts, 1e-4);
}

fn every_shipped_model(opts: StepOptions, tol: f64) {
    for (name, graph) in onnx_common::shipped_models() {
        let base = TrainConfig {
            batch: 4,
            precision: Precision::Fp32,
            seed: 11,
            lr: 1e-3,
            ..TrainConfig::default()
        };
        // noise target with clipping active; velocity with min-SNR; the conditional model drops labels.
        let cfgs = [
            TrainConfig { prediction: Prediction::Noise, clip_grad: 0.05, ..base.clone() },
            TrainConfig {
                prediction: Prediction::Velocity,
                min_snr_gamma: 5.0,
                clip_grad: 0.0,
                ..base.clone()
            },
        ];
        let drop = graph.classes().map(|_| 0.5);
        for cfg in &cfgs {
            one_step(&format!("{name} {}", cfg.prediction), &graph, cfg, drop, opts, tol);
        }
    }
}

fn run(
    graph: &Graph,
    out: &Path,
    cfg: &TrainConfig,
    engine: TrainEngine,
    resume: bool,
    stop: Option<u64>,
) -> Params {
    let resume = resume.then(|| Checkpoint::load(&out.join(CHECKPOINT_FILE), graph, HASH, "unet").unwrap());
    let job = TrainJob {
        graph,
        model_name: "unet".into(),
        model_hash: HASH.into(),
        config: cfg.clone(),
        dataset: data(graph, 32, 9),
        label_drop: None,
        out_dir: out.to_path_buf(),
        resume,
        stop_after: stop,
        progress: false,
        engine,
    };
    train(job).unwrap();
    Checkpoint::load(&out.join(CHECKPOINT_FILE), graph, HASH, "unet").unwrap().model
}

fn unet() -> Graph {
    onnx_common::shipped_models().into_iter().find(|(n, _)| n == "unet.toml").unwrap().1
}

fn short_run(steps: u64) -> TrainConfig {
    TrainConfig {
        steps,
        batch: 4,
        lr: 2e-3,
        precision: Precision::Fp32,
        checkpoint_every: 1000,
        samples: 0,
        sample_every: 0,
        seed: 5,
        ..TrainConfig::default()
    }
}

#[test]
fn thirty_steps_of_unet_end_near_the_interpreters_weights() {
    if !onnx_common::onnxruntime_available("thirty_steps_of_unet_end_near_the_interpreters_weights") {
        return;
    }
    let graph = unet();
    let cfg = short_run(30);
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let interp = run(&graph, a.path(), &cfg, TrainEngine::Interp, false, None);
    let ort = run(&graph, b.path(), &cfg, TrainEngine::Ort(cpu()), false, None);
    let (r, tensor) = worst(&ort, &interp);
    eprintln!("30 steps of unet.toml: worst relative L2 {r:.2e} ({tensor})");
    assert!(r <= 1e-3, "after 30 steps the weights differ by {r:.2e} relative in {tensor}");
}

#[test]
fn a_checkpoint_resumes_on_the_other_engine() {
    if !onnx_common::onnxruntime_available("a_checkpoint_resumes_on_the_other_engine") {
        return;
    }
    let graph = unet();
    let cfg = short_run(6);
    let whole = tempfile::tempdir().unwrap();
    let reference = run(&graph, whole.path(), &cfg, TrainEngine::Interp, false, None);
    for (first, second) in
        [(TrainEngine::Interp, TrainEngine::Ort(cpu())), (TrainEngine::Ort(cpu()), TrainEngine::Interp)]
    {
        let dir = tempfile::tempdir().unwrap();
        run(&graph, dir.path(), &cfg, first, false, Some(3));
        let resumed = run(&graph, dir.path(), &cfg, second, true, None);
        let (r, tensor) = worst(&resumed, &reference);
        // The 30-step bar: the engines round differently and AdamW amplifies it a little per step.
        assert!(
            r <= 1e-3,
            "{first:?} then {second:?}: differs from the interpreter's run by {r:.2e} in {tensor}"
        );
    }
}

#[test]
fn step_graphs_pass_onnx_checker() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = step_recipe(&TrainConfig { clip_grad: 1.0, ..TrainConfig::default() });
    let paths: Vec<_> = onnx_common::shipped_models()
        .into_iter()
        .map(|(name, g)| {
            let path = dir.path().join(format!("step-{name}.onnx"));
            let model = mdc::train_step::compile(&g, &recipe).unwrap();
            std::fs::write(&path, model.encode_to_vec()).unwrap();
            path
        })
        .collect();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/onnx_check.py");
    let out = match std::process::Command::new("python3").arg(script).args(&paths).output() {
        Ok(o) => o,
        Err(e) if !onnx_common::in_ci() => return eprintln!("NOTICE: skipping: cannot run python3: {e}"),
        Err(e) => panic!("python3 is required in CI: {e}"),
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(3) {
        assert!(!onnx_common::in_ci(), "CI must install the Python onnx package: {stderr}");
        return eprintln!("NOTICE: skipping the ONNX checker test: {stderr}");
    }
    assert!(out.status.success(), "onnx.checker rejected a step graph:\n{stderr}");
}
