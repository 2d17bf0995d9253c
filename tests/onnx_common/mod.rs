//! Helpers shared by the onnx_* tests: export a graph to a temporary file and open it in
//! onnxruntime, and decide what to do when onnxruntime or Python's onnx is not installed.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use mdc::base::rng::Rng;
use mdc::graph::Graph;
use mdc::onnx::{export_to_file, ModelInfo, ScheduleInfo};
use mdc::params::{CheckpointInfo, Params};
use mdc::runtime::{Device, OrtDenoiser};
use mdc::train::{Checkpoint, Guide, TrainConfig};
use ndarray::{Array1, Array4};

/// True when a missing optional tool must fail the test (CI installs everything).
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Whether onnxruntime can be loaded. Outside CI a missing library skips the test with a notice.
pub fn onnxruntime_available(test: &str) -> bool {
    match mdc::runtime::discover::environment() {
        Ok(_) => true,
        Err(e) if in_ci() => panic!("{test}: onnxruntime is required in CI: {e}"),
        Err(e) => {
            eprintln!("NOTICE: skipping {test}: {e}");
            false
        }
    }
}

pub fn info_for(graph: &Graph) -> ModelInfo {
    let (c, h, w) = graph.input_shape().as_image().expect("image input");
    ModelInfo {
        mdc_version: env!("CARGO_PKG_VERSION").into(),
        model_file: "test-graph".into(),
        model_hash: "0".repeat(64),
        weights: "test".into(),
        schedule: ScheduleInfo::default(),
        channels: c,
        height: h,
        width: w,
        classes: graph.classes().map(|count| mdc::onnx::ClassInfo { count, names: Vec::new() }),
        autoguidance: None,
    }
}

/// Exports to `dir/name.onnx` and returns the path.
pub fn export(graph: &Graph, params: &Params, dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(format!("{name}.onnx"));
    export_to_file(graph, params, None, &info_for(graph), &path).expect("export");
    path
}

pub fn open(path: &Path) -> OrtDenoiser {
    OrtDenoiser::open(path, Device::Cpu).unwrap_or_else(|e| panic!("open {}: {e:#}", path.display()))
}

/// Random parameters with every tensor drawn N(mean, std) where mean is 1 for norm weights:
/// unlike the init (weight 1, bias 0) this exercises the affine parts too.
pub fn random_params(graph: &Graph, seed: u64) -> Params {
    let mut p = Params::init(graph, seed);
    let mut rng = Rng::new(seed ^ 0xabcdef);
    for (name, t) in p.names.iter().zip(p.tensors.iter_mut()) {
        let norm_weight = t.ndim() == 1 && name.ends_with(".weight");
        t.mapv_inplace(|v| {
            let noise = 0.2 * rng.normal() as f32;
            if norm_weight {
                1.0 + noise
            } else {
                v + noise * v.abs().max(0.05)
            }
        });
    }
    p
}

/// A training checkpoint of [`random_params`] (seeds 1 to 4: weights, EMA, Adam moments) for the
/// model file with `model_hash`, at `step` with recipe `config`, keeping `guide` when given.
pub fn random_checkpoint(
    graph: &Graph,
    model_hash: &str,
    step: u64,
    config: TrainConfig,
    guide: Option<Guide>,
) -> Checkpoint {
    let info = CheckpointInfo {
        step,
        rng: [1, 2, 3, 4],
        data_epoch: 0,
        data_position: 0,
        model_hash: model_hash.to_string(),
        config,
        class_names: Vec::new(),
        guide_step: guide.as_ref().map(|g| g.step),
        mdc_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    let [model, ema, adam_m, adam_v] = [1, 2, 3, 4].map(|seed| random_params(graph, seed));
    Checkpoint { info, model, ema, adam_m, adam_v, guide }
}

pub fn random_images(n: usize, c: usize, h: usize, w: usize, seed: u64) -> Array4<f32> {
    let mut rng = Rng::new(seed);
    Array4::from_shape_simple_fn((n, c, h, w), || rng.normal() as f32)
}

/// Timesteps spread over 0..1000, including both ends.
pub fn timesteps(n: usize, seed: u64) -> Array1<f32> {
    let mut rng = Rng::new(seed);
    Array1::from_shape_fn(n, |i| match i {
        0 => 999.0,
        1 => 0.0,
        _ => rng.below(1000) as f32,
    })
}

pub fn max_abs_diff(a: &Array4<f32>, b: &Array4<f32>) -> f32 {
    assert_eq!(a.shape(), b.shape(), "shapes differ");
    a.iter().zip(b.iter()).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// A small U-Net with a self-attention block at the lower resolution (mini_unet has none):
/// covers every op, including attention, in one realistic graph.
pub fn attention_unet(in_channels: usize, size: usize) -> Graph {
    use mdc::check::blocks::{attention, conv, downsample, group_norm, resblock, time_mlp, upsample};
    use mdc::graph::PrimitiveGraphBuilder;
    use mdc::ops::{Concat, Input, Silu, Timestep};
    let mut b = PrimitiveGraphBuilder::new();
    let x = b.add("x", "x", Input { channels: in_channels, height: size, width: size }, &[]).unwrap();
    let t = b.add("t", "t", Timestep, &[]).unwrap();
    let temb = time_mlp(&mut b, "time", t, 16, 32).unwrap();
    let h0 = conv(&mut b, "init", "init", x, 16, 3, 1, 1).unwrap();
    let e1 = resblock(&mut b, "enc1", h0, temb, 16, 4, false).unwrap();
    let d1 = downsample(&mut b, "down1", e1).unwrap();
    let e2 = resblock(&mut b, "enc2", d1, temb, 32, 4, false).unwrap();
    let a = attention(&mut b, "mid_attn", e2, 2, 4).unwrap();
    let m = resblock(&mut b, "mid", a, temb, 32, 4, false).unwrap();
    let u = upsample(&mut b, "up1", m).unwrap();
    let cat = b.add("cat1", "cat1", Concat, &[u, e1]).unwrap();
    let dcd = resblock(&mut b, "dec1", cat, temb, 16, 4, false).unwrap();
    let o = group_norm(&mut b, "out_norm", "out_norm", dcd, 4).unwrap();
    let o = b.add("out_silu", "out_silu", Silu, &[o]).unwrap();
    let o = conv(&mut b, "out", "out", o, in_channels, 3, 1, 1).unwrap();
    b.finish(o)
}

/// The models every export test covers: the shipped mini U-Net (grey 28x28 and RGB 32x32) and
/// the attention U-Net. (name, graph)
pub fn test_models() -> Vec<(&'static str, Graph)> {
    use mdc::check::blocks::mini_unet;
    vec![
        ("mini_unet_grey28", mini_unet(1, 28, [32, 64, 128, 128], 8, 32, 128).unwrap()),
        ("mini_unet_rgb32", mini_unet(3, 32, [32, 64, 128, 128], 8, 32, 128).unwrap()),
        ("attention_unet_rgb16", attention_unet(3, 16)),
    ]
}

/// Every model file shipped in models/, loaded and checked: (file name, graph).
pub fn shipped_models() -> Vec<(String, Graph)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no model files in {}", dir.display());
    files
        .into_iter()
        .map(|p| {
            let m = mdc::model::load(&p).unwrap_or_else(|e| panic!("{} does not check: {e}", p.display()));
            (p.file_name().unwrap().to_string_lossy().into_owned(), m.graph)
        })
        .collect()
}

/// The attention U-Net (3x16x16) with random weights, exported to `dir/small.onnx`.
pub fn small_model(dir: &Path) -> PathBuf {
    let (_, g) = test_models().pop().unwrap();
    export(&g, &random_params(&g, 2), dir, "small")
}
