//! DDPM training on the interpreter: noise-prediction MSE at uniform timesteps, AdamW with
//! warmup + cosine learning rate, gradient clipping, an EMA of the weights, atomic checkpoints
//! that resume bit-for-bit, a loss log and plot, and a sample grid at the end.

mod checkpoint;
mod config;
mod ema;
mod log;
mod lr;
mod plot;

pub use checkpoint::{Checkpoint, CheckpointError, CHECKPOINT_FILE};
pub use config::{Origin, Recipe, TrainConfig, DEFAULT_BATCH, DEFAULT_STEPS, KEYS, RECIPE_KEYS};
pub use ema::{ema_decay, update_ema};
pub use log::{read as read_loss_log, LogRow, LossLog, LOG_FILE};
pub use lr::learning_rate;
pub use plot::loss_svg;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use ndarray::{Array1, Array4, Zip};

use crate::data::{DataOrder, Dataset};
use crate::diffusion::{sample, InterpDenoiser, NoiseSchedule, SampleOptions, Sampler};
use crate::graph::Graph;
use crate::image_io::{write_grid, GridLayout};
use crate::interp::Executor;
use crate::optim::{clip_grad_norm, AdamW, AdamWHyper};
use crate::params::Params;
use crate::rng::Rng;

pub const PLOT_FILE: &str = "loss.svg";
pub const SAMPLES_FILE: &str = "samples.png";

/// Everything a training run needs, already loaded and checked by the caller.
pub struct TrainJob<'a> {
    pub graph: &'a Graph,
    /// The model file as the user named it (for messages and the plot title).
    pub model_name: String,
    pub model_hash: String,
    pub config: TrainConfig,
    pub dataset: Dataset,
    pub out_dir: PathBuf,
    /// Continue from this checkpoint (already checked against the model's hash).
    pub resume: Option<Checkpoint>,
    /// Stop after this step as if interrupted (the checkpoint is written; resume later).
    pub stop_after: Option<u64>,
    /// Show a progress bar (or, without a terminal, a line every few percent).
    pub progress: bool,
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
    /// The sample grid and the seconds it took, when the run completed and sampling is on.
    pub samples: Option<(PathBuf, f64)>,
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
    let cfg = &job.config;
    std::fs::create_dir_all(&job.out_dir)
        .with_context(|| format!("cannot create output folder {}", job.out_dir.display()))?;
    let ckpt_path = job.out_dir.join(CHECKPOINT_FILE);
    let log_path = job.out_dir.join(LOG_FILE);
    let schedule = NoiseSchedule::new(cfg.schedule, cfg.timesteps);
    let image = job.dataset.image_shape();
    let hyper = AdamWHyper {
        beta1: cfg.adam_beta1 as f32,
        beta2: cfg.adam_beta2 as f32,
        eps: 1e-8,
        weight_decay: cfg.weight_decay as f32,
    };

    // State: fresh from the seed, or exactly as the checkpoint left it.
    let (mut params, mut ema, mut opt, mut rng, mut order, start) = match job.resume {
        None => {
            let params = Params::init(job.graph, cfg.seed);
            let opt = AdamW::new(&params, hyper);
            let rng = Rng::new(cfg.seed ^ 0x5EED_0F_D1FF_0000_u64);
            (params.clone(), params, opt, rng, DataOrder::new(job.dataset.len(), cfg.seed), 0)
        }
        Some(ck) => {
            let mut opt = AdamW::new(&ck.model, hyper);
            opt.m = ck.adam_m;
            opt.v = ck.adam_v;
            opt.t = ck.step;
            let order = DataOrder::restore(job.dataset.len(), cfg.seed, ck.data_epoch, ck.data_position);
            (ck.model, ck.ema, opt, Rng::from_state(ck.rng), order, ck.step)
        }
    };
    let mut last_saved: Option<u64> = (start > 0).then_some(start);
    let mut log = LossLog::open(&log_path, Some(start))?;
    let mut exec = Executor::new(job.graph.clone());
    let mut grads = params.zeros_like();
    let end = job.stop_after.map_or(cfg.steps, |s| s.min(cfg.steps));

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
    let mut smoothed: Option<f64> = None;
    let mut last_loss = None;
    for step in start + 1..=end {
        let lr = learning_rate(cfg, step);
        let x0 = job.dataset.gather(&order.next_batch(cfg.batch));
        let t: Vec<usize> = (0..cfg.batch).map(|_| rng.below(cfg.timesteps)).collect();
        let noise = Array4::from_shape_simple_fn(x0.raw_dim(), || rng.normal() as f32);
        let xt = schedule.add_noise(x0.view(), noise.view(), &t);
        let tf = Array1::from_iter(t.iter().map(|&v| v as f32));
        let pred = exec.forward_train(&params, xt.view(), tf.view());
        let (loss, dy) = mse_and_grad(&pred, &noise);

        let diverged = |what, value: f64| Diverged {
            step,
            what,
            value,
            lr,
            kept: match last_saved {
                Some(s) => format!(
                    "the last good checkpoint is {} (step {s}); nothing later was saved",
                    ckpt_path.display()
                ),
                None => "no checkpoint had been written yet; nothing was saved".to_string(),
            },
        };
        if !loss.is_finite() {
            bar.abandon();
            return Err(diverged("loss", loss).into());
        }
        exec.backward(&params, dy.view(), &mut grads);
        let max_norm = if cfg.clip_grad > 0.0 { cfg.clip_grad as f32 } else { f32::INFINITY };
        let grad_norm = clip_grad_norm(&mut grads, max_norm) as f64;
        if !grad_norm.is_finite() {
            bar.abandon();
            return Err(diverged("gradient norm", grad_norm).into());
        }
        opt.step(&mut params, &grads, lr as f32);
        update_ema(&mut ema, &params, cfg.ema_decay, step);

        let seconds = started.elapsed().as_secs_f64();
        log.append(&LogRow { step, loss, lr, grad_norm, seconds })?;
        last_loss = Some(loss);
        let sm = smoothed.map_or(loss, |s| 0.9 * s + 0.1 * loss);
        smoothed = Some(sm);
        let ips = (step - start) as f64 * cfg.batch as f64 / seconds.max(1e-9);
        bar.set_message(format!("loss {sm:.4} | {ips:.1} img/s"));
        bar.set_position(step);
        if job.progress && !show_bar && (step % line_every == 0 || step == end) {
            eprintln!("step {step}/{} loss {sm:.4} lr {lr:.2e} {ips:.1} img/s {seconds:.0}s", cfg.steps);
        }

        if step % cfg.checkpoint_every == 0 || step == end {
            let (data_epoch, data_position) = order.state();
            Checkpoint {
                step,
                model: params.clone(),
                ema: ema.clone(),
                adam_m: opt.m.clone(),
                adam_v: opt.v.clone(),
                rng: rng.state(),
                data_epoch,
                data_position,
                model_hash: job.model_hash.clone(),
                config: cfg.clone(),
            }
            .save(&ckpt_path)
            .with_context(|| format!("cannot write checkpoint {}", ckpt_path.display()))?;
            last_saved = Some(step);
        }
    }
    let train_seconds = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    drop(log);

    let plot_path = job.out_dir.join(PLOT_FILE);
    let rows = read_loss_log(&log_path)?;
    let points: Vec<(u64, f64)> = rows.iter().map(|r| (r.step, r.loss)).collect();
    let title = format!("{}: training loss, batch {}, lr {:e}", job.model_name, cfg.batch, cfg.lr);
    crate::fsutil::write_atomic(&plot_path, loss_svg(&points, &title).as_bytes())
        .with_context(|| format!("cannot write {}", plot_path.display()))?;

    let samples = if end == cfg.steps && cfg.samples > 0 {
        let path = job.out_dir.join(SAMPLES_FILE);
        let t0 = Instant::now();
        let opts = SampleOptions {
            count: cfg.samples,
            batch: cfg.samples,
            sampler: if cfg.sample_steps == 0 {
                Sampler::Ddpm
            } else {
                Sampler::Ddim { steps: cfg.sample_steps, eta: 0.0 }
            },
            clip_x0: true,
            seed: cfg.seed,
        };
        let images = sample_images(job.graph, ema, &schedule, image, &opts, job.progress)?;
        write_grid(&path, &images, GridLayout::auto(image[1].max(image[2])))?;
        Some((path, t0.elapsed().as_secs_f64()))
    } else {
        None
    };
    let trained = end.saturating_sub(start);
    Ok(TrainOutcome {
        first_step: start + 1,
        last_step: end,
        final_loss: last_loss.map(|l| smoothed.unwrap_or(l)),
        train_seconds,
        images_per_second: trained as f64 * cfg.batch as f64 / train_seconds.max(1e-9),
        checkpoint: ckpt_path,
        log: log_path,
        plot: plot_path,
        samples,
    })
}

/// Mean squared error between predicted and true noise, and its gradient w.r.t. the prediction.
pub fn mse_and_grad(pred: &Array4<f32>, target: &Array4<f32>) -> (f64, Array4<f32>) {
    let n = pred.len() as f64;
    let mut sum = 0.0f64;
    let mut dy = Array4::zeros(pred.raw_dim());
    let scale = (2.0 / n) as f32;
    Zip::from(&mut dy).and(pred).and(target).for_each(|d, &p, &t| {
        let e = p - t;
        sum += (e as f64) * (e as f64);
        *d = scale * e;
    });
    (sum / n, dy)
}

/// Samples images with the interpreter, showing a progress bar when asked.
pub fn sample_images(
    graph: &Graph,
    params: Params,
    schedule: &NoiseSchedule,
    image: [usize; 3],
    opts: &SampleOptions,
    progress: bool,
) -> anyhow::Result<Array4<f32>> {
    let mut den = InterpDenoiser { executor: Executor::new(graph.clone()), params };
    let bar =
        if progress && std::io::stderr().is_terminal() { ProgressBar::new(1) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>8} [{bar:30}] {pos}/{len} denoising steps | {elapsed} < {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix("sample");
    let images = sample(&mut den, schedule, image, opts, &mut |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish_and_clear();
    Ok(images)
}

/// The output folder's checkpoint path.
pub fn checkpoint_path(out_dir: &Path) -> PathBuf {
    out_dir.join(CHECKPOINT_FILE)
}
