//! The interpreter's numbers that `scripts/torch_check.sh` compares the PyTorch export with (a
//! debugging aid, not part of the CLI). Writes one safetensors file:
//!
//! `forward MODEL.toml OUT [SEED]`: fresh weights (`param.<name>`), inputs `x`, `t`, `y` and the
//! fp32 interpreter's outputs with the labels (`out`) and without (`out_null`).
//!
//! `step MODEL.toml OUT WARM BATCH`: trains WARM steps of the model file's recipe (fp32, built-in
//! digits, batch BATCH), then one more, and writes the state before it (`before.<part>.<name>`),
//! that step's inputs (`x0`, `t`, `noise`, `y`: the labels after dropout), its clipped gradients
//! (`grad.<name>`) and the state after it (`after.<part>.<name>`), the loss, learning rate,
//! gradient norm and recipe in the metadata.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context};
use mdc::base::rng::Rng;
use mdc::data::{DataSource, Dataset};
use mdc::diffusion::NoiseSchedule;
use mdc::interp::Executor;
use mdc::kernels::Precision;
use mdc::params::Params;
use mdc::train::{LabelDropout, Origin, Recipe, TrainConfig, TrainState};
use ndarray::{Array1, Array4};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["forward", model, out] => forward(model, out, 0),
        ["forward", model, out, seed] => forward(model, out, seed.parse()?),
        ["step", model, out, warm, batch] => step(model, out, warm.parse()?, batch.parse()?),
        _ => bail!("usage: torch_reference forward MODEL OUT [SEED] | step MODEL OUT WARM BATCH"),
    }
}

fn f32_view<'a>(
    name: &str,
    shape: &[usize],
    data: &'a [u8],
) -> (String, safetensors::tensor::TensorView<'a>) {
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.to_vec(), data)
        .expect("shape fits");
    (name.to_string(), view)
}

fn bytes(v: impl IntoIterator<Item = f32>) -> Vec<u8> {
    v.into_iter().flat_map(f32::to_le_bytes).collect()
}

/// (name, shape, bytes) of every tensor of `p`, named `<prefix><param>`.
fn named(prefix: &str, p: &Params) -> Vec<(String, Vec<usize>, Vec<u8>)> {
    p.names
        .iter()
        .zip(&p.tensors)
        .map(|(n, t)| (format!("{prefix}{n}"), t.shape().to_vec(), bytes(t.iter().copied())))
        .collect()
}

fn write(
    out: &str,
    tensors: &[(String, Vec<usize>, Vec<u8>)],
    meta: HashMap<String, String>,
) -> anyhow::Result<()> {
    let views: Vec<_> = tensors.iter().map(|(n, s, b)| f32_view(n, s, b)).collect();
    let data = mdc::base::safetensors_out::safetensors_bytes(views, Some(&meta));
    std::fs::write(out, data).with_context(|| format!("cannot write {out}"))
}

fn forward(model_path: &str, out: &str, seed: u64) -> anyhow::Result<()> {
    let model = mdc::model::load(Path::new(model_path))?;
    let g = &model.graph;
    let params = Params::init(g, seed);
    let (c, h, w) = g.input_shape().as_image().context("image input")?;
    let n = 4;
    let mut rng = Rng::new(seed + 1);
    let x = Array4::from_shape_simple_fn([n, c, h, w], || rng.normal() as f32);
    let t = Array1::from(vec![0.0f32, 17.0, 500.0, 999.0]);
    let classes = g.classes();
    let y: Option<Vec<u32>> = classes.map(|k| vec![0, (k / 2) as u32, (k - 1) as u32, k as u32]);
    let mut exec = Executor::new(g.clone()).with_precision(Precision::Fp32);
    let labelled = exec.forward_labeled(&params, x.view(), t.view(), y.as_deref(), false);
    let null = exec.forward_labeled(&params, x.view(), t.view(), None, false);
    let mut tensors = named("param.", &params);
    tensors.push(("x".into(), x.shape().to_vec(), bytes(x.iter().copied())));
    tensors.push(("t".into(), vec![n], bytes(t.iter().copied())));
    if let Some(y) = &y {
        tensors.push(("y".into(), vec![n], bytes(y.iter().map(|&v| v as f32))));
    }
    tensors.push(("out".into(), labelled.shape().to_vec(), bytes(labelled.iter().copied())));
    tensors.push(("out_null".into(), null.shape().to_vec(), bytes(null.iter().copied())));
    write(out, &tensors, HashMap::new())
}

fn step(model_path: &str, out: &str, warm: u64, batch: usize) -> anyhow::Result<()> {
    let model = mdc::model::load(Path::new(model_path))?;
    let g = &model.graph;
    let mut recipe = Recipe::new(TrainConfig::default(), Origin::Default);
    if let Some(table) = &model.train {
        recipe.apply_table(table, Origin::ModelFile).map_err(|p| anyhow::anyhow!("[train]: {p:?}"))?;
    }
    let mut cfg = recipe.config;
    cfg.batch = batch;
    cfg.steps = 100;
    cfg.warmup = Some(cfg.warmup_steps());
    cfg.precision = Precision::Fp32;
    let data = Dataset::load(&DataSource::Builtin, (28, 28))?.first(cfg.builtin_digits);
    let schedule = NoiseSchedule::new(cfg.schedule, cfg.timesteps);
    let dropout =
        g.classes().zip(model.label_drop).map(|(null, drop)| LabelDropout { null: null as u32, drop });
    let mut state = TrainState::fresh(g, &cfg, data.len());
    let mut exec = Executor::new(g.clone()).with_precision(Precision::Fp32);
    let mut grads = state.params.zeros_like();
    for _ in 0..warm {
        state
            .step(&mut exec, &mut grads, &data, &schedule, &cfg, dropout)
            .map_err(|e| anyhow::anyhow!(e.what))?;
    }
    let mut tensors = Vec::new();
    for (part, p) in
        [("model", &state.params), ("ema", &state.ema), ("adam_m", &state.opt.m), ("adam_v", &state.opt.v)]
    {
        tensors.extend(named(&format!("before.{part}."), p));
    }
    // The draws the step makes, in its order, from copies of its generator and data order.
    let (mut rng, mut order): (Rng, _) = (state.rng.clone(), state.order.clone());
    let idx = order.next_batch(batch);
    let x0 = data.gather(&idx);
    let t: Vec<f32> = (0..batch).map(|_| rng.below(cfg.timesteps) as f32).collect();
    let noise = Array4::from_shape_simple_fn(x0.raw_dim(), || rng.normal() as f32);
    let y: Option<Vec<f32>> = dropout.map(|d| {
        let labels = data.gather_labels(&idx).expect("labelled");
        labels.into_iter().map(|v| (if rng.uniform() < d.drop { d.null } else { v }) as f32).collect()
    });
    let stats = state
        .step(&mut exec, &mut grads, &data, &schedule, &cfg, dropout)
        .map_err(|e| anyhow::anyhow!(e.what))?;
    tensors.push(("x0".into(), x0.shape().to_vec(), bytes(x0.iter().copied())));
    tensors.push(("t".into(), vec![batch], bytes(t)));
    tensors.push(("noise".into(), noise.shape().to_vec(), bytes(noise.iter().copied())));
    if let Some(y) = y {
        tensors.push(("y".into(), vec![batch], bytes(y)));
    }
    tensors.extend(named("grad.", &grads));
    for (part, p) in
        [("model", &state.params), ("ema", &state.ema), ("adam_m", &state.opt.m), ("adam_v", &state.opt.v)]
    {
        tensors.extend(named(&format!("after.{part}."), p));
    }
    let meta: HashMap<String, String> = [
        ("step", state.step.to_string()),
        ("loss", format!("{:e}", stats.loss)),
        ("lr", format!("{:e}", stats.lr)),
        ("grad_norm", format!("{:e}", stats.grad_norm)),
        ("config", serde_json::to_string(&cfg)?),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    write(out, &tensors, meta)
}
