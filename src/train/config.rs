//! The training recipe: defaults, overridden by the model file's `[train]` section, overridden
//! by the command line. Every value remembers where it came from so the run can print it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::diffusion::{Prediction, SamplerKind, ScheduleKind};
use crate::kernels::bf16::Precision;

/// Steps of the default recipe: the wall time of the earlier 800 steps of the 32-64-128-128 U-Net
/// (about 5.5 min on a free 2-core Zen 5), spent on models/unet.toml's 16-32-64-64 U-Net, whose
/// steps take 0.32x as long (`mdc bench --train-batch 64`, back to back). docs/recipe.md has the
/// measurements; retune here when the interpreter gets faster.
pub const DEFAULT_STEPS: u64 = 2900;
/// Images per step of the default recipe.
pub const DEFAULT_BATCH: usize = 64;

/// Where a setting's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Default,
    ModelFile,
    CommandLine,
    Checkpoint,
}

impl Origin {
    fn label(self) -> &'static str {
        match self {
            Origin::Default => "default",
            Origin::ModelFile => "model file [train]",
            Origin::CommandLine => "command line",
            Origin::Checkpoint => "checkpoint",
        }
    }
}

/// Most images per step or per sample run (`batch`, `samples`, `mdc sample -n`): more would
/// exhaust memory long before it was useful.
pub const MAX_IMAGES: u64 = 4096;
/// Most diffusion timesteps T (`timesteps`, `mdc sample --timesteps`, an exported model's metadata).
pub const MAX_TIMESTEPS: u64 = 100_000;

/// Whether a setting may change when a run is resumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnResume {
    /// It decides what the run computes: `--resume` refuses a different value.
    Fixed,
    /// Length, logging and sampling: free to change.
    MayChange,
}

/// One training setting, as declared in the table below.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    pub name: &'static str,
    /// `integer`, `number`, `string` or the choices.
    pub type_name: &'static str,
    pub limits: Limits,
    pub on_resume: OnResume,
    /// Whether `mdc train` has a `--name` flag for it (every setting also takes `--set name=value`).
    pub flag: bool,
    pub doc: &'static str,
}

/// The allowed values of a setting.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Limits {
    /// An integer in `lo..=hi`.
    Int { lo: u64, hi: u64 },
    /// A finite number between `lo` and `hi`, each end included or not.
    Float { lo: f64, lo_open: bool, hi: f64, hi_open: bool },
    /// Anything of the type (a string, one of a choice).
    Any,
}

impl Limits {
    pub const fn int(lo: u64, hi: u64) -> Limits {
        Limits::Int { lo, hi }
    }
    /// `[lo, hi]`
    pub const fn closed(lo: f64, hi: f64) -> Limits {
        Limits::Float { lo, lo_open: false, hi, hi_open: false }
    }
    /// `[lo, hi)`
    pub const fn half_open(lo: f64, hi: f64) -> Limits {
        Limits::Float { lo, lo_open: false, hi, hi_open: true }
    }
    /// `> lo`
    pub const fn above(lo: f64) -> Limits {
        Limits::Float { lo, lo_open: true, hi: f64::INFINITY, hi_open: true }
    }

    /// What a value must be, for messages: "an integer from 1 to 4096", "a number in [0, 1)".
    pub fn expected(&self) -> String {
        match *self {
            Limits::Int { lo: 0, hi: u64::MAX } => "a non-negative integer".into(),
            Limits::Int { lo: 1, hi: u64::MAX } => "a positive integer".into(),
            Limits::Int { lo, hi: u64::MAX } => format!("an integer of at least {lo}"),
            Limits::Int { lo, hi } => format!("an integer from {lo} to {hi}"),
            Limits::Float { lo, lo_open, hi, .. } if hi == f64::INFINITY => {
                format!("a number {} {lo}", if lo_open { ">" } else { ">=" })
            }
            Limits::Float { lo, lo_open, hi, hi_open } => format!(
                "a number in {}{lo}, {hi}{}",
                if lo_open { "(" } else { "[" },
                if hi_open { ")" } else { "]" }
            ),
            Limits::Any => "a value".into(),
        }
    }

    fn admits_int(&self, v: u64) -> bool {
        match *self {
            Limits::Int { lo, hi } => (lo..=hi).contains(&v),
            _ => true,
        }
    }

    fn admits_float(&self, v: f64) -> bool {
        match *self {
            Limits::Float { lo, lo_open, hi, hi_open } => {
                v.is_finite()
                    && if lo_open { v > lo } else { v >= lo }
                    && if hi_open { v < hi } else { v <= hi }
            }
            _ => v.is_finite(),
        }
    }
}

/// A Rust type a setting can have: how it is read from TOML, checked and shown.
pub trait SettingValue: Sized {
    const TYPE: &'static str;
    /// The value, or "expected ..., found ..." (without the key).
    fn from_toml(v: &toml::Value, limits: &Limits) -> Result<Self, String>;
    /// Whether a value from elsewhere (a checkpoint) is within the limits.
    fn check(&self, _limits: &Limits) -> Result<(), String> {
        Ok(())
    }
    fn show(&self) -> String;
}

impl SettingValue for u64 {
    const TYPE: &'static str = "integer";
    fn from_toml(v: &toml::Value, limits: &Limits) -> Result<Self, String> {
        let expected = limits.expected();
        match v.as_integer() {
            Some(i) if i >= 0 && limits.admits_int(i as u64) => Ok(i as u64),
            Some(i) => Err(format!("expected {expected}, found {i}")),
            None => Err(format!("expected {expected}, found {}", type_name(v))),
        }
    }
    fn check(&self, limits: &Limits) -> Result<(), String> {
        if limits.admits_int(*self) {
            Ok(())
        } else {
            Err(format!("expected {}, found {self}", limits.expected()))
        }
    }
    fn show(&self) -> String {
        self.to_string()
    }
}

impl SettingValue for usize {
    const TYPE: &'static str = "integer";
    fn from_toml(v: &toml::Value, limits: &Limits) -> Result<Self, String> {
        u64::from_toml(v, limits).map(|n| n as usize)
    }
    fn check(&self, limits: &Limits) -> Result<(), String> {
        (*self as u64).check(limits)
    }
    fn show(&self) -> String {
        self.to_string()
    }
}

/// An optional value: absent means "computed from the others" or "found" (see the setting's docs).
impl<T: SettingValue> SettingValue for Option<T> {
    const TYPE: &'static str = T::TYPE;
    fn from_toml(v: &toml::Value, limits: &Limits) -> Result<Self, String> {
        T::from_toml(v, limits).map(Some)
    }
    fn check(&self, limits: &Limits) -> Result<(), String> {
        self.as_ref().map_or(Ok(()), |v| v.check(limits))
    }
    fn show(&self) -> String {
        self.as_ref().map_or("auto".into(), T::show)
    }
}

impl SettingValue for f64 {
    const TYPE: &'static str = "number";
    fn from_toml(v: &toml::Value, limits: &Limits) -> Result<Self, String> {
        let f = v
            .as_float()
            .or_else(|| v.as_integer().map(|i| i as f64))
            .filter(|f| f.is_finite())
            .ok_or_else(|| format!("expected a number, found {}", type_name(v)))?;
        f.check(limits).map(|()| f)
    }
    fn check(&self, limits: &Limits) -> Result<(), String> {
        if limits.admits_float(*self) {
            Ok(())
        } else {
            Err(format!("expected {}, found {self}", limits.expected()))
        }
    }
    fn show(&self) -> String {
        self.to_string()
    }
}

impl SettingValue for String {
    const TYPE: &'static str = "string";
    fn from_toml(v: &toml::Value, _limits: &Limits) -> Result<Self, String> {
        v.as_str().map(str::to_string).ok_or_else(|| format!("expected a string, found {}", type_name(v)))
    }
    fn show(&self) -> String {
        self.clone()
    }
}

/// A setting that is one of a few names (`schedule = "cosine"`).
pub trait Choice: Sized + Copy + 'static {
    const NAMES: &'static str;
    fn all() -> &'static [Self];
    fn name(self) -> &'static str;
}

impl<T: Choice> SettingValue for T {
    const TYPE: &'static str = T::NAMES;
    fn from_toml(v: &toml::Value, _limits: &Limits) -> Result<Self, String> {
        let s = v.as_str().ok_or_else(|| format!("expected {}, found {}", T::NAMES, type_name(v)))?;
        T::all()
            .iter()
            .copied()
            .find(|c| c.name() == s)
            .ok_or_else(|| format!("expected {}, found \"{s}\"", T::NAMES))
    }
    fn show(&self) -> String {
        self.name().to_string()
    }
}

impl Choice for Precision {
    const NAMES: &'static str = "\"bf16\" or \"fp32\"";
    fn all() -> &'static [Self] {
        &[Precision::Bf16, Precision::Fp32]
    }
    fn name(self) -> &'static str {
        Precision::name(self)
    }
}

impl Choice for SamplerKind {
    const NAMES: &'static str = SamplerKind::NAMES;
    fn all() -> &'static [Self] {
        &[SamplerKind::Ddpm, SamplerKind::Ddim, SamplerKind::Dpmpp2m]
    }
    fn name(self) -> &'static str {
        SamplerKind::name(self)
    }
}

impl Choice for Prediction {
    const NAMES: &'static str = "\"noise\" or \"velocity\"";
    fn all() -> &'static [Self] {
        &[Prediction::Noise, Prediction::Velocity]
    }
    fn name(self) -> &'static str {
        Prediction::name(self)
    }
}

impl Choice for ScheduleKind {
    const NAMES: &'static str = "\"linear\" or \"cosine\"";
    fn all() -> &'static [Self] {
        &[ScheduleKind::Linear, ScheduleKind::Cosine]
    }
    fn name(self) -> &'static str {
        ScheduleKind::name(self)
    }
}

/// Declares every training setting once: the [`TrainConfig`] field, its default, its limits,
/// whether a resumed run may change it, whether it has a command-line flag, one line of docs,
/// (optionally) the `legacy` value a checkpoint from before the setting existed meant, and
/// (optionally) how `mdc train` shows its value. Parsing (`[train]`, `--set`, the flags),
/// range checks, did-you-mean, the printed settings and the README table all read the result.
macro_rules! settings {
    ($(
        $name:ident : $ty:ty {
            default: $default:expr,
            limits: $limits:expr,
            on_resume: $resume:ident,
            flag: $flag:expr,
            doc: $doc:literal
            $(, legacy: $legacy:expr)?
            $(, show: $show:expr)? $(,)?
        }
    )*) => {
        /// The training recipe; see [`SETTINGS`] for each field's meaning and limits.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        // A checkpoint's recipe lacking a key was written before that setting existed: it gets
        // the setting's `legacy` value (what such runs did), else its default.
        #[serde(deny_unknown_fields, default = "TrainConfig::legacy")]
        pub struct TrainConfig {
            $(#[doc = $doc] pub $name: $ty,)*
        }

        impl Default for TrainConfig {
            fn default() -> Self {
                TrainConfig { $($name: $default,)* }
            }
        }

        impl TrainConfig {
            /// The defaults, except that each setting with a `legacy` value has that: what a
            /// checkpoint's recipe meant for the settings it lacks.
            pub fn legacy() -> Self {
                #[allow(unused_mut)]
                let mut c = TrainConfig::default();
                $($(c.$name = $legacy;)?)*
                c
            }
        }

        /// Every setting `[train]`, `--set` and the flags accept, in the order `mdc train` prints them.
        pub const SETTINGS: &[Setting] = &[$(
            Setting {
                name: stringify!($name),
                type_name: <$ty as SettingValue>::TYPE,
                limits: $limits,
                on_resume: OnResume::$resume,
                flag: $flag,
                doc: $doc,
            },
        )*];

        impl TrainConfig {
            /// Sets the setting `name` (one of [`SETTINGS`]) from a TOML value; the error is
            /// "expected ..., found ...".
            fn set_value(&mut self, name: &str, v: &toml::Value) -> Result<(), String> {
                match name {
                    $(stringify!($name) => self.$name = <$ty as SettingValue>::from_toml(v, &$limits)?,)*
                    _ => unreachable!("`{name}` is not a setting"),
                }
                Ok(())
            }

            /// Checks every setting against its limits, for recipes from any source, checkpoint
            /// metadata included (values outside them would exhaust memory or divide by zero).
            pub fn check_ranges(&self) -> Result<(), String> {
                $(self.$name.check(&$limits).map_err(|e| format!("`{}`: {e}", stringify!($name)))?;)*
                Ok(())
            }

            /// The value of setting `name` as written in a model file (`auto` for an unset option).
            pub fn value_text(&self, name: &str) -> String {
                match name {
                    $(stringify!($name) => self.$name.show(),)*
                    _ => String::new(),
                }
            }

            /// The value of setting `name` as `mdc train` prints it.
            pub fn show(&self, name: &str) -> String {
                match name {
                    $(stringify!($name) => settings!(@show self, $name $(, $show)?),)*
                    _ => String::new(),
                }
            }
        }
    };
    (@show $self:ident, $name:ident) => { $self.$name.show() };
    (@show $self:ident, $name:ident, $show:expr) => { ($show)($self) };
}

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

impl Limits {
    /// The same lower bound, now included (`>= lo`).
    pub const fn or_equal(self) -> Limits {
        match self {
            Limits::Float { lo, hi, hi_open, .. } => Limits::Float { lo, lo_open: false, hi, hi_open },
            other => other,
        }
    }
}

impl Setting {
    pub fn find(name: &str) -> Option<&'static Setting> {
        SETTINGS.iter().find(|s| s.name == name)
    }
}

/// Names of the settings that decide what a resumed run computes.
pub fn recipe_keys() -> impl Iterator<Item = &'static str> {
    SETTINGS.iter().filter(|s| s.on_resume == OnResume::Fixed).map(|s| s.name)
}

/// A recipe plus where each value came from.
#[derive(Debug, Clone)]
pub struct Recipe {
    pub config: TrainConfig,
    pub origins: BTreeMap<&'static str, Origin>,
}

impl Recipe {
    pub fn new(config: TrainConfig, origin: Origin) -> Recipe {
        Recipe { config, origins: SETTINGS.iter().map(|s| (s.name, origin)).collect() }
    }

    /// Applies a model file's `[train]` table; every problem is reported as (key, message).
    pub fn apply_table(&mut self, table: &toml::Table, origin: Origin) -> Result<(), Vec<(String, String)>> {
        let problems: Vec<(String, String)> = table
            .iter()
            .filter_map(|(key, value)| self.set(key, value, origin).err().map(|p| (key.clone(), p)))
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// Sets one key from a TOML value, with a message naming the key and the expected value.
    pub fn set(&mut self, key: &str, value: &toml::Value, origin: Origin) -> Result<(), String> {
        let setting = Setting::find(key).ok_or_else(|| unknown_key(key))?;
        self.config.set_value(key, value).map_err(|e| format!("`{key}`: {e}"))?;
        self.origins.insert(setting.name, origin);
        Ok(())
    }

    /// Checks values that only make sense together.
    pub fn validate(&self) -> Result<(), String> {
        let c = &self.config;
        c.check_ranges()?;
        if c.warmup_steps() > c.steps {
            return Err(format!(
                "`warmup` ({}) is longer than the run (`steps` = {})",
                c.warmup_steps(),
                c.steps
            ));
        }
        if let Some(max_t) = c.autoguidance_max_t.filter(|&t| t >= c.timesteps as u64) {
            return Err(format!(
                "`autoguidance_max_t` ({max_t}) must be below the schedule's `timesteps` ({}); leave it out to \
                 steer at every step",
                c.timesteps
            ));
        }
        if c.sample_steps > c.timesteps {
            return Err(format!(
                "`sample_steps` ({}) exceeds the schedule's `timesteps` ({})",
                c.sample_steps, c.timesteps
            ));
        }
        Ok(())
    }

    /// The settings as aligned `key = value   (origin)` lines.
    pub fn describe(&self) -> String {
        SETTINGS
            .iter()
            .map(|s| {
                let origin = self.origins.get(s.name).copied().unwrap_or(Origin::Default);
                format!("  {:<17} {:<22} ({})", s.name, self.config.show(s.name), origin.label())
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl TrainConfig {
    /// The final grid's sampler: `sample_steps` = 0 means DDPM over every timestep.
    pub fn final_sampler(&self) -> crate::diffusion::Sampler {
        let kind = if self.sample_steps == 0 { SamplerKind::Ddpm } else { self.sampler };
        kind.with_steps(self.sample_steps, self.sample_eta as f32)
    }

    /// The step after which the EMA weights are kept as the autoguidance guide (None: no guide).
    pub fn guide_step(&self) -> Option<u64> {
        (self.guide_at > 0.0).then(|| ((self.guide_at * self.steps as f64).round() as u64).max(1))
    }

    /// How the final grid and `mdc sample` steer by the guide (`autoguidance`, `autoguidance_max_t`).
    pub fn steering(&self) -> crate::diffusion::Steering {
        crate::diffusion::Steering { weight: self.autoguidance as f32, max_t: self.autoguidance_max_t }
    }

    pub fn warmup_steps(&self) -> u64 {
        self.warmup.unwrap_or(self.steps / 20)
    }

    /// Recipe keys whose values differ between `self` and `other`, as `key: a -> b`.
    pub fn recipe_differences(&self, other: &TrainConfig) -> Vec<String> {
        let a = serde_json::to_value(self).expect("config serialises");
        let b = serde_json::to_value(other).expect("config serialises");
        recipe_keys().filter(|k| a[*k] != b[*k]).map(|k| format!("{k}: {} -> {}", a[k], b[k])).collect()
    }
}

/// The README's table of `[train]` settings, generated from [`SETTINGS`].
pub fn settings_markdown() -> String {
    let defaults = TrainConfig::default();
    let legacy = TrainConfig::legacy();
    let mut out =
        String::from("| setting | type | default | allowed | what it is |\n|---|---|---|---|---|\n");
    for s in SETTINGS {
        let allowed = match s.limits {
            Limits::Any => "".to_string(),
            l => l.expected(),
        };
        let flag = if s.flag { format!(" (`--{}`)", s.name.replace('_', "-")) } else { String::new() };
        let old = legacy.value_text(s.name);
        let old = if old == defaults.value_text(s.name) {
            String::new()
        } else {
            format!(" (checkpoints from before this setting: {old})")
        };
        out.push_str(&format!(
            "| `{}`{flag} | {} | {} | {allowed} | {}{old} |\n",
            s.name,
            s.type_name,
            defaults.value_text(s.name),
            s.doc
        ));
    }
    out
}

/// Why a `[train]` entry is refused, for a diagnostic at its line.
#[derive(Debug, Clone, PartialEq)]
pub struct SettingProblem {
    /// The key is not a setting (else its value is wrong).
    pub unknown: bool,
    pub message: String,
    pub help: Option<String>,
}

/// Checks one `key = value` of a model file's `[train]` against [`SETTINGS`].
pub fn check_setting(key: &str, value: &toml::Value) -> Result<(), SettingProblem> {
    let names = || SETTINGS.iter().map(|s| s.name);
    let Some(setting) = Setting::find(key) else {
        let help = match crate::dsl::diag::did_you_mean(key, names()) {
            Some(k) => format!("did you mean `{k}`?"),
            None => format!("the settings are {}", names().collect::<Vec<_>>().join(", ")),
        };
        return Err(SettingProblem {
            unknown: true,
            message: format!("unknown training setting `{key}`"),
            help: Some(help),
        });
    };
    TrainConfig::default().set_value(key, value).map_err(|message| SettingProblem {
        unknown: false,
        message,
        help: Some(format!("`{key}`: {}", setting.doc)),
    })
}

/// "unknown training setting `stpes`; did you mean `steps`? (known: ...)"
fn unknown_key(key: &str) -> String {
    let known = SETTINGS.iter().map(|s| s.name).collect::<Vec<_>>().join(", ");
    match crate::dsl::diag::did_you_mean(key, SETTINGS.iter().map(|s| s.name)) {
        Some(k) => format!("unknown training setting `{key}`; did you mean `{k}`? (known: {known})"),
        None => format!("unknown training setting `{key}` (known: {known})"),
    }
}

fn type_name(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => format!("the string \"{s}\""),
        other => format!("{} {other}", other.type_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_overrides_defaults_and_reports_every_problem() {
        let mut r = Recipe::new(TrainConfig::default(), Origin::Default);
        let t: toml::Table = "steps = 50\nlr = 2e-4\nschedule = \"cosine\"".parse().unwrap();
        r.apply_table(&t, Origin::ModelFile).unwrap();
        assert_eq!((r.config.steps, r.config.lr, r.config.schedule), (50, 2e-4, ScheduleKind::Cosine));
        assert_eq!(r.origins["steps"], Origin::ModelFile);
        assert_eq!(r.origins["batch"], Origin::Default);
        assert_eq!(r.config.warmup_steps(), 2);
        assert!(r.describe().contains("steps             50"));

        let bad: toml::Table =
            "stpes = 5\nlr = \"fast\"\nema_decay = 1.5\nschedule = \"cos\"\nzzz = 1".parse().unwrap();
        let problems = r.apply_table(&bad, Origin::ModelFile).unwrap_err();
        assert_eq!(problems.len(), 5, "{problems:?}");
        let all = problems.iter().map(|p| p.1.clone()).collect::<Vec<_>>().join("\n");
        assert!(all.contains("unknown training setting `stpes`; did you mean `steps`?"), "{all}");
        assert!(all.contains("`lr`: expected a number, found the string \"fast\""), "{all}");
        assert!(all.contains("`ema_decay`: expected a number in [0, 1), found 1.5"), "{all}");
        assert!(all.contains("expected \"linear\" or \"cosine\", found \"cos\""), "{all}");
        assert!(all.contains("unknown training setting `zzz` (known:"), "{all}");
    }

    #[test]
    fn a_train_entry_is_checked_against_the_table() {
        let ok = check_setting("sample_eta", &toml::Value::Float(0.5));
        assert_eq!(ok, Ok(()));
        let e = check_setting("sample_eta", &toml::Value::Float(1.5)).unwrap_err();
        assert_eq!((e.unknown, e.message.as_str()), (false, "expected a number in [0, 1], found 1.5"));
        let e = check_setting("kernel", &toml::Value::Integer(3)).unwrap_err();
        assert!(e.unknown && e.help.unwrap().starts_with("the settings are steps, batch"));
        let e = check_setting("sampel_eta", &toml::Value::Integer(0)).unwrap_err();
        assert_eq!(e.help.as_deref(), Some("did you mean `sample_eta`?"));
    }

    #[test]
    fn every_setting_has_a_default_within_its_limits_and_docs() {
        let c = TrainConfig::default();
        assert_eq!(c.check_ranges(), Ok(()));
        for s in SETTINGS {
            assert!(!c.show(s.name).is_empty() && !s.doc.is_empty(), "{}", s.name);
        }
        let keys: Vec<&str> = recipe_keys().collect();
        assert!(keys.contains(&"lr") && !keys.contains(&"steps") && !keys.contains(&"samples"));
        let t = settings_markdown();
        assert!(
            t.contains(
                "| `batch` (`--batch`) | integer | 64 | an integer from 1 to 4096 | images per step |"
            ),
            "{t}"
        );
        assert!(t.contains("| `warmup` (`--warmup`) | integer | auto |"), "{t}");
        assert!(t.contains("(0: off, plain MSE) (checkpoints from before this setting: 0) |"), "{t}");
    }

    #[test]
    fn sizes_beyond_their_range_are_refused_from_every_source() {
        let mut r = Recipe::new(TrainConfig::default(), Origin::Default);
        let t: toml::Table =
            "batch = 100000000000000000\ntimesteps = 0\nsamples = 4097\ncheckpoint_every = 0\nsteps = -1"
                .parse()
                .unwrap();
        let all: Vec<String> =
            r.apply_table(&t, Origin::CommandLine).unwrap_err().into_iter().map(|p| p.1).collect();
        let all = all.join("\n");
        assert!(
            all.contains("`batch`: expected an integer from 1 to 4096, found 100000000000000000"),
            "{all}"
        );
        assert!(all.contains("`timesteps`: expected an integer from 1 to 100000, found 0"), "{all}");
        assert!(all.contains("`samples`: expected an integer from 0 to 4096, found 4097"), "{all}");
        assert!(all.contains("`checkpoint_every`: expected a positive integer, found 0"), "{all}");
        assert!(all.contains("`steps`: expected a positive integer, found -1"), "{all}");
        assert_eq!(r.config, TrainConfig::default());

        // A recipe read back from a checkpoint is checked by the same ranges.
        for (key, edit) in [
            (
                "checkpoint_every",
                &(|c: &mut TrainConfig| c.checkpoint_every = 0) as &dyn Fn(&mut TrainConfig),
            ),
            ("timesteps", &|c: &mut TrainConfig| c.timesteps = 0),
            ("batch", &|c: &mut TrainConfig| c.batch = 5000),
        ] {
            let mut c = TrainConfig::default();
            edit(&mut c);
            let e = c.check_ranges().unwrap_err();
            assert!(e.starts_with(&format!("`{key}`: expected")), "{e}");
            let e = Recipe::new(c, Origin::Checkpoint).validate().unwrap_err();
            assert!(e.starts_with(&format!("`{key}`: expected")), "{e}");
        }
        assert_eq!(TrainConfig::default().check_ranges(), Ok(()));
    }

    #[test]
    fn recipes_from_older_checkpoints_keep_their_old_meaning() {
        let mut old = serde_json::to_value(TrainConfig::default()).unwrap();
        let keys = [
            "precision",
            "sampler",
            "sample_every",
            "min_snr_gamma",
            "prediction",
            "guide_at",
            "autoguidance",
        ];
        for key in keys.into_iter().chain(["builtin_digits"]) {
            old.as_object_mut().unwrap().remove(key).expect("the key is serialised");
        }
        let c: TrainConfig = serde_json::from_value(old).unwrap();
        assert_eq!(
            (c.sampler, c.sample_every, c.min_snr_gamma, c.builtin_digits),
            (SamplerKind::Ddim, 0, 0.0, 1000)
        );
        // The other settings are read as written, and the legacy values differ from the defaults.
        assert_eq!(
            c,
            TrainConfig {
                precision: Precision::Fp32,
                min_snr_gamma: 0.0,
                sample_every: 0,
                builtin_digits: 1000,
                prediction: Prediction::Noise,
                guide_at: 0.0,
                autoguidance: 1.0,
                ..TrainConfig::default()
            }
        );
        assert_eq!(TrainConfig::legacy(), c);

        // A recipe JSON from before these settings, as an older mdc wrote it.
        let json = r#"{"steps":800,"batch":64,"lr":0.001,"warmup":null,"weight_decay":0.0,
            "adam_beta1":0.9,"adam_beta2":0.999,"clip_grad":1.0,"ema_decay":0.999,"schedule":"linear",
            "timesteps":1000,"seed":0,"data":"builtin","checkpoint_every":100,"samples":36,
            "sample_steps":100,"sample_eta":1.0}"#;
        let c: TrainConfig = serde_json::from_str(json).unwrap();
        assert_eq!((c.steps, c.lr, c.min_snr_gamma, c.builtin_digits), (800, 1e-3, 0.0, 1000));
        assert_eq!((c.sampler, c.sample_every, c.precision), (SamplerKind::Ddim, 0, Precision::Fp32));
        assert_eq!((c.prediction, c.guide_step(), c.autoguidance), (Prediction::Noise, None, 1.0));
        assert_eq!(c.check_ranges(), Ok(()));

        // A current recipe round-trips unchanged (a present key is never replaced by its legacy value).
        let now = TrainConfig::default();
        let back: TrainConfig = serde_json::from_value(serde_json::to_value(&now).unwrap()).unwrap();
        assert_eq!(back, now);
    }

    #[test]
    fn autoguidance_max_t_must_fall_inside_the_schedule() {
        let mut r = Recipe::new(TrainConfig::default(), Origin::Default);
        let table: toml::Table = toml::from_str("autoguidance_max_t = 850").unwrap();
        r.apply_table(&table, Origin::ModelFile).unwrap();
        assert_eq!(r.validate(), Ok(()));
        assert_eq!(r.config.steering(), crate::diffusion::Steering { weight: 3.0, max_t: Some(850) });
        assert!(r.describe().contains("t <= 850"), "{}", r.describe());
        r.config.timesteps = 850;
        let e = r.validate().unwrap_err();
        assert!(
            e.contains("`autoguidance_max_t` (850) must be below the schedule's `timesteps` (850)"),
            "{e}"
        );
        let table: toml::Table = toml::from_str("autoguidance_max_t = -1").unwrap();
        let e = r.apply_table(&table, Origin::ModelFile).unwrap_err();
        assert_eq!(e[0].0, "autoguidance_max_t");
    }

    #[test]
    fn recipe_differences_name_the_changed_keys_only() {
        let a = TrainConfig::default();
        let mut b = a.clone();
        b.steps = 5;
        b.samples = 4;
        assert!(a.recipe_differences(&b).is_empty());
        b.lr = 0.5;
        assert_eq!(a.recipe_differences(&b), vec!["lr: 0.002 -> 0.5".to_string()]);
    }
}
