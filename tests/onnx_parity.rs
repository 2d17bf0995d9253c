//! The exporter and the interpreter agree: every model in models/ (and a small attention U-Net),
//! with freshly initialised and with trained-like weights, at batch sizes 1, 3 and 8, gives the
//! same predicted noise in onnxruntime as in mdc's interpreter (max abs difference <= 1e-4).

mod onnx_common;

use mdc::graph::Graph;
use mdc::interp::Executor;
use mdc::params::Params;
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
        let mut model = open(&path);
        for (i, batch) in [1usize, 3, 8].into_iter().enumerate() {
            let x = random_images(batch, c, h, w, 100 + i as u64);
            let t = timesteps(batch, 200 + i as u64);
            let expected = exec.forward(params, x.view(), t.view());
            let got = model.forward(x.view(), t.view()).unwrap();
            let diff = max_abs_diff(&got, &expected);
            let scale = expected.iter().fold(0f32, |m, v| m.max(v.abs()));
            eprintln!("{name} {kind} batch {batch}: max |ort - interp| = {diff:.2e} (max |y| = {scale:.2})");
            assert!(diff <= TOL, "{name}, {kind} weights, batch {batch}: max abs diff {diff:.3e} > {TOL}");
        }
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

/// Real trained weights, when given: MDC_PARITY_CHECKPOINTS="models/unet.toml=run/checkpoint.safetensors"
/// (comma-separated pairs; EMA weights of a training checkpoint, or a plain weights file).
#[test]
fn trained_checkpoints_match_interpreter() {
    let Ok(spec) = std::env::var("MDC_PARITY_CHECKPOINTS") else {
        eprintln!("NOTICE: set MDC_PARITY_CHECKPOINTS=MODEL.toml=CHECKPOINT[,...] to compare trained checkpoints too");
        return;
    };
    if !onnxruntime_available("trained_checkpoints_match_interpreter") {
        return;
    }
    for pair in spec.split(',').filter(|p| !p.is_empty()) {
        let (model, ckpt) =
            pair.split_once('=').unwrap_or_else(|| panic!("expected MODEL=CHECKPOINT, found {pair:?}"));
        let model = mdc::model::load(std::path::Path::new(model)).unwrap_or_else(|e| panic!("{e}"));
        let (params, _) = Params::load_for_inference(std::path::Path::new(ckpt), &model.graph, true)
            .unwrap_or_else(|e| panic!("{e}"));
        check_weights(&model.path.display().to_string(), &model.graph, &[("checkpoint", params)]);
    }
}
