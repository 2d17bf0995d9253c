//! Every `[train]` setting, declared once. To add a setting, add an entry here: its
//! [`TrainConfig`] field, default, limits, whether a resumed run may change it, whether it has a
//! command-line flag, one line of docs and (for settings older checkpoints lack) its `legacy`
//! value. Parsing, range checks, did-you-mean, `mdc train`'s printout and the table in docs/train.md follow.

use serde::{Deserialize, Serialize};

use super::value::{Limits, OnResume, Setting, SettingValue};
use crate::base::limits::{MAX_IMAGES, MAX_TIMESTEPS};
use crate::diffusion::{Prediction, SamplerKind, ScheduleKind};
use crate::kernels::Precision;

/// Steps of the default recipe: the wall time of the earlier 800 steps of the 32-64-128-128 U-Net
/// (about 5.5 min on a free 2-core Zen 5), spent on models/unet.toml's 16-32-64-64 U-Net, whose
/// steps take 0.32x as long (`mdc bench --train-batch 64`, back to back). docs/experiments/recipe.md has the
/// measurements; retune here when the interpreter gets faster.
pub const DEFAULT_STEPS: u64 = 2900;
/// Images per step of the default recipe.
pub const DEFAULT_BATCH: usize = 64;

settings! {
    steps: u64 {
        default: DEFAULT_STEPS,
        limits: Limits::int(1, u64::MAX),
        on_resume: MayChange,
        flag: true,
        doc: "optimizer steps in the whole run",
    }
    batch: usize {
        default: DEFAULT_BATCH,
        limits: Limits::int(1, MAX_IMAGES),
        on_resume: Fixed,
        flag: true,
        doc: "images per step",
    }
    lr: f64 {
        default: 2e-3,
        limits: Limits::above(0.0),
        on_resume: Fixed,
        flag: true,
        doc: "peak learning rate (AdamW), reached after warmup, then cosine-decayed",
        show: |c: &TrainConfig| format!("{:e}", c.lr),
    }
    warmup: Option<u64> {
        default: None,
        limits: Limits::int(0, u64::MAX),
        on_resume: Fixed,
        flag: true,
        doc: "linear warmup steps (default 5% of steps)",
        show: |c: &TrainConfig| format!("{} steps", c.warmup_steps()),
    }
    weight_decay: f64 {
        default: 0.0,
        limits: Limits::above(0.0).or_equal(),
        on_resume: Fixed,
        flag: false,
        doc: "AdamW decoupled weight decay",
    }
    adam_beta1: f64 {
        default: 0.9,
        limits: Limits::half_open(0.0, 1.0),
        on_resume: Fixed,
        flag: false,
        doc: "AdamW beta1",
    }
    adam_beta2: f64 {
        default: 0.999,
        limits: Limits::half_open(0.0, 1.0),
        on_resume: Fixed,
        flag: false,
        doc: "AdamW beta2",
    }
    clip_grad: f64 {
        default: 1.0,
        limits: Limits::above(0.0).or_equal(),
        on_resume: Fixed,
        flag: true,
        doc: "gradient-norm clipping threshold (0 turns clipping off)",
        show: |c: &TrainConfig| if c.clip_grad > 0.0 { c.clip_grad.to_string() } else { "off".into() },
    }
    ema_decay: f64 {
        default: 0.999,
        limits: Limits::half_open(0.0, 1.0),
        on_resume: Fixed,
        flag: true,
        doc: "maximum EMA decay of the sampling weights (warms up as (1 + step) / (10 + step))",
    }
    schedule: ScheduleKind {
        default: ScheduleKind::Cosine,
        limits: Limits::Any,
        on_resume: Fixed,
        flag: true,
        doc: "noise schedule",
    }
    timesteps: usize {
        default: 1000,
        limits: Limits::int(1, MAX_TIMESTEPS),
        on_resume: Fixed,
        flag: true,
        doc: "diffusion timesteps T",
    }
    seed: u64 {
        default: 0,
        limits: Limits::int(0, u64::MAX),
        on_resume: Fixed,
        flag: true,
        doc: "seed for the initial weights, the data order and the noise",
    }
    data: String {
        default: "builtin".into(),
        limits: Limits::Any,
        on_resume: Fixed,
        flag: true,
        doc: "training images: `builtin` (MNIST digits, see `builtin_digits`), an IDX file (.gz or raw) or a folder of PNG/JPEG",
    }
    labels: Option<String> {
        default: None,
        limits: Limits::Any,
        on_resume: Fixed,
        flag: true,
        doc: "IDX1 label file of IDX `data`, one class per image: used only by class-conditional models, \
              checked whenever given (auto: the file MNIST's naming puts next to the images, `train-images-idx3-ubyte` -> \
              `train-labels-idx1-ubyte`; the built-in digits have labels 0-9, a folder's classes are its sub-folders)",
        legacy: None,
    }
    checkpoint_every: u64 {
        default: 100,
        limits: Limits::int(1, u64::MAX),
        on_resume: MayChange,
        flag: true,
        doc: "steps between checkpoints (one is always written at the end)",
    }
    samples: usize {
        default: 36,
        limits: Limits::int(0, MAX_IMAGES),
        on_resume: MayChange,
        flag: true,
        doc: "images in the final sample grid (0: no sampling)",
    }
    sample_steps: usize {
        default: 100,
        limits: Limits::int(0, u64::MAX),
        on_resume: MayChange,
        flag: true,
        doc: "steps of the final sample grid's sampler (0: DDPM over all timesteps, whatever `sampler` says)",
    }
    sample_eta: f64 {
        default: 1.0,
        limits: Limits::closed(0.0, 1.0),
        on_resume: MayChange,
        flag: true,
        doc: "DDIM eta for the final sample grid (1: fresh noise each step, as DDPM, which gives \
              short-trained models clean backgrounds; 0: deterministic)",
    }
    precision: Precision {
        default: Precision::Bf16,
        limits: Limits::Any,
        on_resume: MayChange,
        flag: true,
        doc: "arithmetic of the conv and linear products: bf16 operands with fp32 accumulation (needs AVX512_BF16; \
              where the CPU lacks it, or bf16 would be slower (Intel without AMX), the default falls back to fp32 \
              with a note), or fp32",
        legacy: Precision::Fp32,
    }
    sampler: SamplerKind {
        default: SamplerKind::Ddim,
        limits: Limits::Any,
        on_resume: MayChange,
        flag: true,
        doc: "sampler of the final sample grid (`dpmpp2m`: DPM-Solver++(2M), deterministic, good in 10-25 steps; \
              the preview grids always use it, 10 steps)",
        legacy: SamplerKind::Ddim,
        show: |c: &TrainConfig| c.final_sampler().to_string(),
    }
    sample_every: u64 {
        default: 100,
        limits: Limits::int(0, u64::MAX),
        on_resume: MayChange,
        flag: true,
        doc: "steps between preview grids from the EMA weights, in <out>/samples/ (0: none)",
        legacy: 0,
        show: |c: &TrainConfig| if c.sample_every > 0 { c.sample_every.to_string() } else { "off".into() },
    }
    min_snr_gamma: f64 {
        default: 5.0,
        limits: Limits::above(0.0).or_equal(),
        on_resume: Fixed,
        flag: true,
        doc: "min-SNR-gamma loss weighting (Hang et al. 2023): each image's loss is scaled by \
              min(SNR_t, gamma) / SNR_t, so the many easy low-noise timesteps stop dominating (0: off, plain MSE)",
        legacy: 0.0,
        show: |c: &TrainConfig| if c.min_snr_gamma > 0.0 { c.min_snr_gamma.to_string() } else { "off".into() },
    }
    prediction: Prediction {
        default: Prediction::Velocity,
        limits: Limits::Any,
        on_resume: Fixed,
        flag: true,
        doc: "what the network learns to predict from the noisy image: `noise` (Ho et al. 2020) or `velocity`, \
              v = sqrt(abar) noise - sqrt(1 - abar) x0 (Salimans & Ho 2022); recorded in checkpoints and exports",
        legacy: Prediction::Noise,
    }
    guide_at: f64 {
        default: 0.25,
        limits: Limits::closed(0.0, 1.0),
        on_resume: Fixed,
        flag: true,
        doc: "fraction of the run's steps after which the EMA weights are kept as the autoguidance guide \
              (Karras et al. 2024), a weaker version of the model that sampling steers away from (0: keep none)",
        legacy: 0.0,
        show: |c: &TrainConfig| if c.guide_at > 0.0 { format!("{} (step {})", c.guide_at, c.guide_step().unwrap_or(0)) } else { "off".into() },
    }
    autoguidance: f64 {
        default: 3.0,
        limits: Limits::closed(1.0, 20.0),
        on_resume: MayChange,
        flag: true,
        doc: "autoguidance weight w of the final grid and of `mdc sample`'s default: guide + w (model - guide) \
              (1: the model alone; needs `guide_at` > 0)",
        legacy: 1.0,
    }
    autoguidance_max_t: Option<u64> {
        default: None,
        limits: Limits::int(0, MAX_TIMESTEPS),
        on_resume: MayChange,
        flag: true,
        doc: "the noisiest timestep at which autoguidance steers images without a class label (all of an \
              unconditional model's, `--guidance 0`): above it the model samples alone, so steering does not \
              exaggerate which classes it favours where a sample's class is settled (Kynkäänniemi et al. 2024); \
              an image with a label is steered at every step (auto: every step)",
        show: |c: &TrainConfig| c.autoguidance_max_t.map_or("every step".into(), |t| format!("t <= {t}")),
    }
    builtin_digits: usize {
        default: crate::data::BUILTIN_DIGITS,
        limits: Limits::int(1, crate::data::BUILTIN_DIGITS as u64),
        on_resume: Fixed,
        flag: true,
        doc: "how many of the built-in MNIST digits `data = \"builtin\"` trains on (the first 1000 are \
              the built-in set of earlier versions)",
        legacy: 1000,
    }
}

impl Setting {
    /// The setting called `name`, if the table has one.
    pub fn find(name: &str) -> Option<&'static Setting> {
        SETTINGS.iter().find(|s| s.name == name)
    }
}
