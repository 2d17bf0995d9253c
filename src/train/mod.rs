//! DDPM training on the interpreter: noise- or velocity-prediction MSE at uniform timesteps,
//! AdamW with warmup + cosine learning rate, gradient clipping, an EMA of the weights (and, from
//! `guide_at` on, its early copy kept as the autoguidance guide), atomic checkpoints that resume
//! bit-for-bit, a loss log (overall and per quarter of the timesteps) and plot,
//! small preview grids from the EMA weights while it runs, and a sample grid at the end.

mod checkpoint;
mod ema;
mod log;
mod lr;
pub mod optim;
mod ort_engine;
mod plot;
mod state;

pub use crate::base::limits::{MAX_IMAGES, MAX_TIMESTEPS};
pub use crate::recipe::{
    check_setting, recipe_keys, settings_markdown, Limits, OnResume, Origin, Recipe, Setting, SettingProblem,
    TrainConfig, DEFAULT_BATCH, DEFAULT_STEPS, SETTINGS,
};
pub use checkpoint::{Checkpoint, CheckpointError, Guide, CHECKPOINT_FILE};
pub use ema::{ema_decay, update_ema};
pub use log::{read as read_loss_log, LogRow, LossLog, LOG_FILE};
pub use lr::learning_rate;
pub use ort_engine::{sample_with_ort, step_recipe, time_ort_steps, OrtSteps, TrainEngine};
pub use plot::loss_svg;
pub use state::{mse_and_grad, Batch, LabelDropout, NonFinite, StepStats, TrainState};

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use crate::base::image_io::{write_grid, GridLayout};
use crate::data::Dataset;
use crate::diffusion::{ClassGuidance, NoiseSchedule, SampleOptions, Sampler, DEFAULT_GUIDANCE};
use crate::graph::Graph;
use crate::interp::sample_images;
use crate::interp::Executor;
use crate::params::Params;

pub const PLOT_FILE: &str = "loss.svg";
pub const SAMPLES_FILE: &str = "samples.png";
/// The folder of preview grids, `step-NNNNNN.png`, inside the output folder.
pub const PREVIEW_DIR: &str = "samples";
/// Preview grids are cheap: 16 images, 10 DPM-Solver++ steps (160 forward passes, less than one
/// training step of 64 images), always the same seed so grids from different steps compare.
const PREVIEW_IMAGES: usize = 16;
const PREVIEW_STEPS: usize = 10;

/// Everything a training run needs, already loaded and checked by the caller.
pub struct TrainJob<'a> {
    pub graph: &'a Graph,
    /// The model file as the user named it (for messages and the plot title).
    pub model_name: String,
    pub model_hash: String,
    pub config: TrainConfig,
    pub dataset: Dataset,
    /// A conditional model's `[condition] drop` (None: unconditional). The data's labels were
    /// checked against the model's classes.
    pub label_drop: Option<f64>,
    pub out_dir: PathBuf,
    /// Continue from this checkpoint (already checked against the model's hash).
    pub resume: Option<Checkpoint>,
    /// Stop after this step as if interrupted (the checkpoint is written; resume later).
    pub stop_after: Option<u64>,
    /// Show a progress bar (or, without a terminal, a line every few percent).
    pub progress: bool,
    /// The interpreter, or the compiled step in onnxruntime.
    pub engine: TrainEngine,
}

/// What a finished (or deliberately stopped) run produced.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    pub first_step: u64,
    pub last_step: u64,
    pub final_loss: Option<f64>,
    pub train_seconds: f64,
    pub images_per_second: f64,
    pub checkpoint: PathBuf,
    pub log: PathBuf,
    pub plot: PathBuf,
    /// The sample grid, how many images it holds and the seconds it took, when the run completed
    /// and sampling is on (a conditional model's grid rounds up to whole rows per class).
    pub samples: Option<(PathBuf, usize, f64)>,
}

/// The run stopped because the loss or the gradient stopped being a finite number.
#[derive(Debug, thiserror::Error)]
#[error(
    "training diverged at step {step}: the {what} became {value} (learning rate {lr:e}).\n  {kept}\n  hint: lower the learning rate (--lr) or keep gradient clipping on (--clip-grad 1), then resume or restart"
)]
pub struct Diverged {
    pub step: u64,
    pub what: &'static str,
    pub value: f64,
    pub lr: f64,
    pub kept: String,
}

/// Runs (or continues) training; writes the checkpoint, log, plot and sample grid to `out_dir`.
pub fn train(job: TrainJob) -> anyhow::Result<TrainOutcome> {
    let mut cfg = job.config.clone();
    if cfg.warmup.is_none() {
        // The default (5% of the steps the run started with) is saved resolved, so resuming
        // with more --steps keeps the warmup the run started with.
        let started_with = job.resume.as_ref().map_or(&job.config, |ck| &ck.info.config);
        cfg.warmup = Some(started_with.warmup_steps());
    }
    let cfg = &cfg;
    std::fs::create_dir_all(&job.out_dir)
        .with_context(|| format!("cannot create output folder {}", job.out_dir.display()))?;
    let ckpt_path = job.out_dir.join(CHECKPOINT_FILE);
    let log_path = job.out_dir.join(LOG_FILE);
    let schedule = NoiseSchedule::new(cfg.schedule, cfg.timesteps);
    let image = job.dataset.image_shape();
    let mut state = match job.resume {
        None => TrainState::fresh(job.graph, cfg, job.dataset.len()),
        Some(ck) => TrainState::from_checkpoint(ck, cfg, job.dataset.len()),
    };
    let start = state.step;
    if let Some(stop) = job.stop_after {
        anyhow::ensure!(stop > start, "{}", stop_after_problem(stop, start));
    }
    let mut last_saved: Option<u64> = (start > 0).then_some(start);
    // A fresh run (--overwrite) starts a new log without reading the old one.
    let mut log = LossLog::open(&log_path, (start > 0).then_some(start))?;
    let mut exec = Executor::new(job.graph.clone()).with_precision(job.config.precision);
    let mut grads = state.params.zeros_like();
    let mut ort = match job.engine {
        TrainEngine::Interp => None,
        TrainEngine::Ort(opts) => Some(OrtSteps::open(job.graph, cfg, opts, &state)?),
    };
    let end = job.stop_after.map_or(cfg.steps, |s| s.min(cfg.steps));
    let classes = job.graph.classes();
    let dropout = classes.zip(job.label_drop).map(|(null, drop)| LabelDropout { null: null as u32, drop });
    let class_names: Vec<String> = match (&job.dataset.labels, classes) {
        (Some(l), Some(_)) => l.names.clone(),
        _ => Vec::new(),
    };

    let show_bar = job.progress && std::io::stderr().is_terminal();
    let bar = if show_bar { ProgressBar::new(cfg.steps) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("{prefix:>8} [{bar:30}] {pos}/{len} {msg} | {elapsed} < {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix("train");
    bar.set_position(start);
    let line_every = (cfg.steps / 20).max(1);

    let started = Instant::now();
    // Time spent on preview grids, left out of the training time and speed.
    let mut preview_seconds = 0.0;
    let mut smoothed: Option<f64> = None;
    let mut smoothed_q: [Option<f64>; 4] = [None; 4];
    while state.step < end {
        let result = match ort.as_mut() {
            None => state.step(&mut exec, &mut grads, &job.dataset, &schedule, cfg, dropout),
            Some(o) => o.step(&mut state, &job.dataset, &schedule, cfg, dropout)?,
        };
        let StepStats { loss, lr, grad_norm, quarters } = match result {
            Ok(s) => s,
            Err(bad) => {
                bar.abandon();
                let kept = match last_saved {
                    Some(s) => format!(
                        "the last good checkpoint is {} (step {s}); nothing later was saved",
                        ckpt_path.display()
                    ),
                    None => "no checkpoint had been written yet; nothing was saved".to_string(),
                };
                let step = state.step + 1;
                return Err(Diverged { step, what: bad.what, value: bad.value, lr: bad.lr, kept }.into());
            }
        };
        let step = state.step;
        let seconds = started.elapsed().as_secs_f64() - preview_seconds;
        log.append(&LogRow { step, loss, lr, grad_norm, seconds, quarters })?;
        let sm = smoothed.map_or(loss, |s| 0.9 * s + 0.1 * loss);
        smoothed = Some(sm);
        for (s, q) in smoothed_q.iter_mut().zip(quarters) {
            if let Some(q) = q {
                *s = Some(s.map_or(q, |s| 0.9 * s + 0.1 * q));
            }
        }
        let ips = (step - start) as f64 * cfg.batch as f64 / seconds.max(1e-9);
        bar.set_message(format!("loss {sm:.4} | {ips:.1} img/s"));
        bar.set_position(step);
        if job.progress && !show_bar && (step % line_every == 0 || step == end) {
            let eta = (end - step) as f64 * seconds / (step - start) as f64;
            let q = smoothed_q.map(|q| q.map_or("-".into(), |v| format!("{v:.3}"))).join(" ");
            eprintln!(
                "step {step}/{} loss {sm:.4} (by t quarter, low noise first: {q}) lr {lr:.2e} {ips:.1} img/s elapsed {seconds:.0}s eta {eta:.0}s",
                cfg.steps
            );
        }
        let preview = cfg.sample_every > 0 && step % cfg.sample_every == 0 && step < cfg.steps;
        let save = step % cfg.checkpoint_every == 0 || step == end;
        if let Some(o) = ort.as_mut().filter(|_| preview || save) {
            o.sync(&mut state)?;
        }
        if preview {
            let t0 = Instant::now();
            let path = job.out_dir.join(PREVIEW_DIR).join(format!("step-{step:06}.png"));
            write_preview(&path, job.graph, &state.ema, &schedule, cfg, image, job.engine)?;
            preview_seconds += t0.elapsed().as_secs_f64();
        }
        if save {
            state
                .checkpoint(cfg, &job.model_hash, &class_names)
                .save(&ckpt_path)
                .with_context(|| format!("cannot write checkpoint {}", ckpt_path.display()))?;
            last_saved = Some(step);
        }
    }
    let train_seconds = started.elapsed().as_secs_f64() - preview_seconds;
    bar.finish_and_clear();
    drop(log);

    let plot_path = job.out_dir.join(PLOT_FILE);
    let rows = read_loss_log(&log_path)?;
    let points: Vec<(u64, f64)> = rows.iter().map(|r| (r.step, r.loss)).collect();
    let title = format!("{}: training loss, batch {}, lr {:e}", job.model_name, cfg.batch, cfg.lr);
    crate::base::fsutil::write_file(&plot_path, loss_svg(&points, &title).as_bytes())?;

    let samples = if end == cfg.steps && cfg.samples > 0 {
        let path = job.out_dir.join(SAMPLES_FILE);
        let t0 = Instant::now();
        // A conditional model's grid has one row per class, guided at the default scale.
        let per_class = classes.map(|c| cfg.samples.div_ceil(c).max(1));
        let guidance = classes.zip(per_class).map(|(c, k)| {
            let all: Vec<u32> = (0..c as u32).collect();
            ClassGuidance::rows(&all, k, c as u32, DEFAULT_GUIDANCE)
        });
        let count = guidance.as_ref().map_or(cfg.samples, |g| g.labels.len());
        let opts = SampleOptions {
            count,
            batch: count.min(64),
            sampler: cfg.final_sampler(),
            clip_x0: true,
            prediction: cfg.prediction,
            seed: cfg.seed,
            guidance,
        };
        let guide = state.guide.filter(|_| cfg.autoguidance != 1.0);
        if job.progress {
            let per_row = per_class.map_or(String::new(), |k| {
                format!(", one row of {k} per class, guidance {DEFAULT_GUIDANCE}")
            });
            let guided = guide
                .as_ref()
                .map_or(String::new(), |g| format!(", autoguidance {} from step {}", cfg.steering(), g.step));
            eprintln!(
                "sampling {} images with the EMA weights, {}{per_row}{guided}",
                opts.count, opts.sampler
            );
        }
        let images = match job.engine {
            TrainEngine::Interp => {
                let guide = guide.map(|g| (g.weights, cfg.steering()));
                sample_images(job.graph, state.ema, guide, &schedule, image, &opts, job.progress)?
            }
            TrainEngine::Ort(o) => {
                let guide = guide.as_ref().map(|g| (g, cfg.steering()));
                sample_with_ort(
                    o.device,
                    &job.out_dir,
                    job.graph,
                    &state.ema,
                    guide,
                    cfg,
                    &opts,
                    job.progress,
                )?
            }
        };
        let layout =
            GridLayout { columns: per_class.unwrap_or(0), ..GridLayout::auto(image[1].max(image[2])) };
        write_grid(&path, &images, layout)?;
        Some((path, count, t0.elapsed().as_secs_f64()))
    } else {
        None
    };
    let trained = end.saturating_sub(start);
    Ok(TrainOutcome {
        first_step: start + 1,
        last_step: end,
        final_loss: smoothed,
        train_seconds,
        images_per_second: trained as f64 * cfg.batch as f64 / train_seconds.max(1e-9),
        checkpoint: ckpt_path,
        log: log_path,
        plot: plot_path,
        samples,
    })
}

/// A small grid from the EMA weights, written mid-run so a user sees early whether it learns
/// (sampled by the engine that trains: onnxruntime on its device for `--engine ort`).
fn write_preview(
    path: &Path,
    graph: &Graph,
    ema: &Params,
    schedule: &NoiseSchedule,
    cfg: &TrainConfig,
    image: [usize; 3],
    engine: TrainEngine,
) -> anyhow::Result<()> {
    let (prediction, seed) = (cfg.prediction, cfg.seed);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let steps = PREVIEW_STEPS.min(schedule.timesteps());
    // A conditional model cycles through its classes (guided), so a preview shows each is learnt.
    let guidance = graph.classes().map(|c| ClassGuidance {
        labels: (0..PREVIEW_IMAGES).map(|i| (i % c) as u32).collect(),
        null: c as u32,
        scale: DEFAULT_GUIDANCE,
    });
    let opts = SampleOptions {
        count: PREVIEW_IMAGES,
        batch: PREVIEW_IMAGES,
        sampler: Sampler::DpmSolver2M { steps },
        clip_x0: true,
        prediction,
        seed,
        guidance,
    };
    let images = match engine {
        TrainEngine::Interp => sample_images(graph, ema.clone(), None, schedule, image, &opts, false)?,
        TrainEngine::Ort(o) => {
            let dir = path.parent().unwrap_or(Path::new("."));
            sample_with_ort(o.device, dir, graph, ema, None, cfg, &opts, false)?
        }
    };
    write_grid(path, &images, GridLayout::auto(image[1].max(image[2])))
}

/// Why `--stop-after stop` cannot stop a run that has completed `start` steps (`stop <= start`).
pub fn stop_after_problem(stop: u64, start: u64) -> String {
    if start == 0 {
        format!("--stop-after {stop}: expected a step of at least 1 (the step after which to stop)")
    } else {
        format!("--stop-after {stop}: the run is already at step {start}; give a later step")
    }
}

/// The output folder's checkpoint path.
pub fn checkpoint_path(out_dir: &Path) -> PathBuf {
    out_dir.join(CHECKPOINT_FILE)
}
