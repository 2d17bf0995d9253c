//! The exporter and the interpreter agree: every model in models/ (and a small attention U-Net),
//! with freshly initialised and with trained-like weights, at batch sizes 1, 3 and 8, gives the
//! same predicted noise in onnxruntime as in mdc's interpreter (max abs difference <= 1e-4).

use crate::onnx_common;

use std::path::Path;
use std::process::Command;

use mdc::graph::Graph;
use mdc::interp::Executor;
use mdc::params::{Params, WeightsFile};
use onnx_common::*;

const TOL: f32 = 1e-4;

fn check_model(name: &str, graph: &Graph) {
    // "init": PyTorch's initialisation (norm weights 1, biases 0); "trained": every tensor
    // perturbed, norm affines away from identity, like weights after training.
    check_weights(name, graph, &[("init", Params::init(graph, 11)), ("trained", random_params(graph, 12))]);
}

fn check_weights(name: &str, graph: &Graph, weight_sets: &[(&str, Params)]) {
    let dir = tempfile::tempdir().unwrap();
    let (c, h, w) = graph.input_shape().as_image().unwrap();
    let mut exec = Executor::new(graph.clone());
    for (kind, params) in weight_sets {
        let path = export(graph, params, dir.path(), &format!("{name}-{kind}"));
        compare(&format!("{name} {kind}"), &mut exec, params, &path, (c, h, w));
    }
}

/// The exported model at `path` against the interpreter running `params`, at batch sizes 1, 3, 8.
fn compare(what: &str, exec: &mut Executor, params: &Params, path: &Path, (c, h, w): (usize, usize, usize)) {
    let mut model = open(path);
    for (i, batch) in [1usize, 3, 8].into_iter().enumerate() {
        let x = random_images(batch, c, h, w, 100 + i as u64);
        let t = timesteps(batch, 200 + i as u64);
        // A conditional model gets a mix of real and null labels.
        let labels: Option<Vec<u32>> =
            exec.graph().classes().map(|c| (0..batch).map(|k| ((k * 7 + i) % (c + 1)) as u32).collect());
        let y = labels.as_deref();
        let expected = exec.forward_labeled(params, x.view(), t.view(), y, false);
        let got = model.forward_labeled(x.view(), t.view(), y).unwrap();
        let diff = max_abs_diff(&got, &expected);
        let scale = expected.iter().fold(0f32, |m, v| m.max(v.abs()));
        eprintln!("{what} batch {batch}: max |ort - interp| = {diff:.2e} (max |y| = {scale:.2})");
        assert!(diff <= TOL, "{what} weights, batch {batch}: max abs diff {diff:.3e} > {TOL}");
    }
}

#[test]
fn shipped_models_match_interpreter() {
    if !onnxruntime_available("shipped_models_match_interpreter") {
        return;
    }
    for (name, graph) in shipped_models() {
        check_model(&name, &graph);
    }
}

#[test]
fn attention_unet_matches_interpreter() {
    if !onnxruntime_available("attention_unet_matches_interpreter") {
        return;
    }
    check_model("attention_unet_rgb16", &attention_unet(3, 16));
}

/// Weights that really went through training: `mdc train` runs a tiny model for a few steps,
/// `mdc export onnx --weights` exports its checkpoint (EMA and raw weights), and onnxruntime
/// matches the interpreter running the same checkpoint.
#[test]
fn trained_checkpoint_exports_match_interpreter() {
    if !onnxruntime_available("trained_checkpoint_exports_match_interpreter") {
        return;
    }
    let model_file = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/train_fixtures/tiny.toml");
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let mdc = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_mdc")).args(args).output().unwrap();
        assert!(o.status.success(), "mdc {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    };
    let run = run_dir.to_str().unwrap();
    mdc(&["train", model_file, "--out", run, "--steps", "3", "--samples", "0", "-q"]);
    let ckpt = run_dir.join("checkpoint.safetensors");
    let model = mdc::model::load(Path::new(model_file)).unwrap();
    let shape = model.graph.input_shape().as_image().unwrap();
    let mut exec = Executor::new(model.graph.clone());
    let init = Params::init(&model.graph, 0);
    for (flag, prefer_ema) in [(None, true), (Some("--no-ema"), false)] {
        let params = WeightsFile::open(&ckpt).unwrap().weights(&model.graph, prefer_ema).unwrap();
        assert_ne!(params, init, "training changed the weights");
        let onnx = dir.path().join(format!("tiny-ema-{prefer_ema}.onnx"));
        // The model alone: the run keeps a guide, whose built-in autoguidance an_autoguided_export_*
        // (onnx_sampling) checks.
        let mut args =
            vec!["export", "onnx", model_file, "--weights", ckpt.to_str().unwrap(), "--autoguidance", "1"];
        args.extend(flag);
        args.extend(["-o", onnx.to_str().unwrap()]);
        mdc(&args);
        compare(&format!("tiny trained (ema: {prefer_ema})"), &mut exec, &params, &onnx, shape);
    }
}

/// Real trained weights from elsewhere: MDC_PARITY_CHECKPOINTS="models/unet.toml=run/checkpoint.safetensors"
/// (comma-separated pairs; EMA weights of a training checkpoint, or a plain weights file).
#[test]
#[ignore = "needs MDC_PARITY_CHECKPOINTS=MODEL.toml=CKPT"]
fn trained_checkpoints_match_interpreter() {
    let spec = std::env::var("MDC_PARITY_CHECKPOINTS")
        .expect("set MDC_PARITY_CHECKPOINTS=MODEL.toml=CHECKPOINT[,...] to run this test");
    assert!(
        onnxruntime_available("trained_checkpoints_match_interpreter"),
        "this test needs onnxruntime (ORT_DYLIB_PATH)"
    );
    let mut pairs = 0;
    for pair in spec.split(',').filter(|p| !p.is_empty()) {
        let (model, ckpt) =
            pair.split_once('=').unwrap_or_else(|| panic!("expected MODEL=CHECKPOINT, found {pair:?}"));
        let model = mdc::model::load(Path::new(model)).unwrap_or_else(|e| panic!("{e}"));
        let params = WeightsFile::open(Path::new(ckpt))
            .and_then(|f| f.weights(&model.graph, true))
            .unwrap_or_else(|e| panic!("{e}"));
        check_weights(&model.path.display().to_string(), &model.graph, &[("checkpoint", params)]);
        pairs += 1;
    }
    assert!(pairs > 0, "MDC_PARITY_CHECKPOINTS names no MODEL=CHECKPOINT pair");
}
