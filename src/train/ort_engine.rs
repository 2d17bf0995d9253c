//! Training steps on onnxruntime: the compiled step ([`crate::train_step`]) run with its state
//! on the device ([`StepSession`]). The batch, timesteps, noise and label dropout come from the
//! same [`TrainState`] draws as the interpreter's, and the state comes back to the host only
//! for checkpoints, previews and the guide, so a run resumes on either engine.

use anyhow::Context;
use prost::Message;

use super::state::{
    hyper, loss_weights, quarter_means, Batch, LabelDropout, NonFinite, StepStats, TrainState,
};
use super::{ema_decay, learning_rate, TrainConfig};
use crate::data::Dataset;
use crate::diffusion::NoiseSchedule;
use crate::graph::Graph;
use crate::runtime::step_session::{StepBatch, StepOptions, StepSession};
use crate::train_step::{self, host, FlatLayout, StepRecipe};

/// Which engine runs the training steps.
#[derive(Debug, Clone, Copy, Default)]
pub enum TrainEngine {
    /// mdc's own interpreter on the CPU.
    #[default]
    Interp,
    /// The compiled step in onnxruntime on `device`.
    Ort(StepOptions),
}

/// The settings the compiled step bakes in, from the recipe (as the interpreter's AdamW has them).
pub fn step_recipe(cfg: &TrainConfig) -> StepRecipe {
    let h = hyper(cfg);
    let clip_grad = if cfg.clip_grad > 0.0 { cfg.clip_grad as f32 } else { 0.0 };
    StepRecipe { clip_grad, beta1: h.beta1, beta2: h.beta2, eps: h.eps, weight_decay: h.weight_decay }
}

/// The compiled step's session and what it needs to feed it.
pub struct OrtSteps {
    session: StepSession,
    layout: FlatLayout,
    recipe: StepRecipe,
    /// Whether the host's copy of the state (in [`TrainState`]) is the device's.
    host_current: bool,
}

impl OrtSteps {
    /// Compiles the step for `graph` and `cfg`, opens it and puts `state` on the device.
    pub fn open(
        graph: &Graph,
        cfg: &TrainConfig,
        opts: StepOptions,
        state: &TrainState,
    ) -> anyhow::Result<OrtSteps> {
        let recipe = step_recipe(cfg);
        let model = train_step::compile(graph, &recipe)?;
        let layout = FlatLayout::of(graph);
        let mut session = StepSession::open(&model.encode_to_vec(), layout.len(), opts)?;
        let flat = [&state.params, &state.opt.m, &state.opt.v, &state.ema].map(|p| layout.flatten(p));
        session.upload([&flat[0], &flat[1], &flat[2], &flat[3]])?;
        Ok(OrtSteps { session, layout, recipe, host_current: true })
    }

    /// One step, as [`TrainState::step`] does it on the interpreter.
    pub fn step(
        &mut self,
        state: &mut TrainState,
        data: &Dataset,
        schedule: &NoiseSchedule,
        cfg: &TrainConfig,
        dropout: Option<LabelDropout>,
    ) -> anyhow::Result<Result<StepStats, NonFinite>> {
        let step = state.step + 1;
        let lr = learning_rate(cfg, step);
        let Batch { x0, t, noise, labels } = state.draw_batch(data, cfg, dropout);
        let weights = loss_weights(schedule, cfg, &t);
        let coefficients = host::coefficients(schedule, cfg.prediction, &t, &weights, x0.len());
        let scalars = host::step_scalars(&self.recipe, step, lr, ema_decay(cfg.ema_decay, step));
        let tf: Vec<f32> = t.iter().map(|&v| v as f32).collect();
        let labels: Option<Vec<i64>> = labels.map(|l| l.into_iter().map(i64::from).collect());
        let batch = StepBatch {
            x0: &x0,
            noise: &noise,
            t: &tf,
            labels: labels.as_deref(),
            coefficients: &coefficients,
            scalars,
        };
        let out = self.session.step(&batch)?;
        let (loss, grad_norm) = (out.loss as f64, out.grad_norm as f64);
        // The graph left the state as it was: report as the interpreter does.
        if !loss.is_finite() {
            return Ok(Err(NonFinite { what: "loss", value: loss, lr }));
        }
        if !grad_norm.is_finite() {
            return Ok(Err(NonFinite { what: "gradient norm", value: grad_norm, lr }));
        }
        state.step = step;
        state.opt.t = step;
        self.host_current = false;
        if state.guide.is_none() && cfg.guide_step().is_some_and(|g| step >= g) {
            self.sync(state)?;
            state.take_guide(cfg);
        }
        let per_image: Vec<f64> = out.image_mse.iter().map(|&v| v as f64).collect();
        let quarters = quarter_means(&t, &per_image, cfg.timesteps);
        Ok(Ok(StepStats { loss, lr, grad_norm, quarters }))
    }

    /// Brings the device's state into `state` (for a checkpoint, a preview, the end).
    pub fn sync(&mut self, state: &mut TrainState) -> anyhow::Result<()> {
        if self.host_current {
            return Ok(());
        }
        let targets = [&mut state.params, &mut state.opt.m, &mut state.opt.v, &mut state.ema];
        for (k, target) in targets.into_iter().enumerate() {
            *target = self.layout.unflatten(&self.session.download(k)?);
        }
        self.host_current = true;
        Ok(())
    }
}

/// Seconds per compiled training step of `graph` at `batch` random images (the default recipe),
/// after `warmup` untimed steps: `iters` timings.
pub fn time_ort_steps(
    graph: &Graph,
    opts: StepOptions,
    batch: usize,
    warmup: usize,
    iters: usize,
    seed: u64,
) -> anyhow::Result<Vec<f64>> {
    let (c, h, w) = graph.input_shape().as_image().context("the model's input is not an image")?;
    let mut rng = crate::base::rng::Rng::new(seed);
    let images = ndarray::Array4::from_shape_simple_fn((batch.max(1) * 4, c, h, w), || {
        rng.uniform_range(-1.0, 1.0) as f32
    });
    let mut data = Dataset::new(images, "random");
    let classes = graph.classes();
    let count = data.len() as u32;
    data.labels =
        classes.map(|k| crate::data::Labels::numbered((0..count).map(|i| i % k as u32).collect(), "cyclic"));
    let cfg = TrainConfig { batch, seed, steps: (warmup + iters) as u64, ..TrainConfig::default() };
    let schedule = NoiseSchedule::new(cfg.schedule, cfg.timesteps);
    let dropout = classes.map(|k| LabelDropout { null: k as u32, drop: 0.1 });
    let mut state = TrainState::fresh(graph, &cfg, data.len());
    let mut steps = OrtSteps::open(graph, &cfg, opts, &state)?;
    let mut times = Vec::with_capacity(iters);
    for i in 0..warmup + iters {
        let t0 = std::time::Instant::now();
        let _ = steps.step(&mut state, &data, &schedule, &cfg, dropout)?;
        if i >= warmup {
            times.push(t0.elapsed().as_secs_f64());
        }
    }
    Ok(times)
}

/// Images from `ema` (guided by `guide` when given) sampled through onnxruntime on `device`: the
/// weights exported to ONNX in `dir` (a file removed again), then the exported model's sampler,
/// the same path `mdc sample model.onnx` takes.
#[allow(clippy::too_many_arguments)]
pub fn sample_with_ort(
    device: crate::runtime::Device,
    dir: &std::path::Path,
    graph: &Graph,
    ema: &crate::params::Params,
    guide: Option<(&super::Guide, crate::diffusion::Steering)>,
    cfg: &TrainConfig,
    opts: &crate::diffusion::SampleOptions,
    progress: bool,
) -> anyhow::Result<ndarray::Array4<f32>> {
    use crate::onnx::{AutoguidanceInfo, ClassInfo, ModelInfo, ScheduleInfo};
    let (channels, height, width) =
        graph.input_shape().as_image().context("the model's input is not an image")?;
    let info = ModelInfo {
        mdc_version: env!("CARGO_PKG_VERSION").into(),
        model_file: "training run".into(),
        model_hash: "0".repeat(64),
        weights: "the run's EMA weights".into(),
        schedule: ScheduleInfo::of(cfg),
        channels,
        height,
        width,
        classes: graph.classes().map(|count| ClassInfo { count, names: Vec::new() }),
        autoguidance: guide.map(|(g, steering)| AutoguidanceInfo { steering, guide_step: g.step }),
    };
    let path = dir.join(".sampler.onnx");
    crate::onnx::export_to_file(graph, ema, guide.map(|(g, _)| &g.weights), &info, &path)?;
    let opened = crate::runtime::OrtDenoiser::open(&path, device);
    let _ = std::fs::remove_file(&path);
    let mut den = opened?;
    let schedule = NoiseSchedule::new(cfg.schedule, cfg.timesteps);
    crate::diffusion::sample_with_progress(&mut den, &schedule, [channels, height, width], opts, progress)
}
