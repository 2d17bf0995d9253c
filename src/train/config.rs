//! The training recipe: defaults, overridden by the model file's `[train]` section, overridden
//! by the command line. Every value remembers where it came from so the run can print it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::diffusion::{SamplerKind, ScheduleKind};

/// Steps of the default recipe: the wall time of the earlier 800 steps of the 32-64-128-128 U-Net
/// (about 5.5 min on a free 2-core Zen 5), spent on models/unet.toml's 16-32-64-64 U-Net, whose
/// steps take 0.32x as long (`mdc bench --train-batch 64`, back to back). docs/recipe.md has the
/// measurements; retune here when the interpreter gets faster.
pub const DEFAULT_STEPS: u64 = 2500;
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Optimizer steps in the whole run.
    pub steps: u64,
    pub batch: usize,
    /// Peak learning rate (after warmup).
    pub lr: f64,
    /// Linear warmup steps; `None` = 5% of `steps`.
    pub warmup: Option<u64>,
    pub weight_decay: f64,
    pub adam_beta1: f64,
    pub adam_beta2: f64,
    /// Gradient-norm clipping threshold; 0 disables clipping.
    pub clip_grad: f64,
    /// Upper bound of the EMA decay; the effective decay warms up as (1 + step) / (10 + step).
    pub ema_decay: f64,
    pub schedule: ScheduleKind,
    pub timesteps: usize,
    pub seed: u64,
    /// `builtin`, an IDX file or a folder of images.
    pub data: String,
    /// Write a checkpoint every this many steps (and always at the end).
    pub checkpoint_every: u64,
    /// Images in the sample grid written at the end; 0 skips sampling.
    pub samples: usize,
    /// DDIM steps for that grid (0 = DDPM over all timesteps).
    pub sample_steps: usize,
    /// DDIM eta for that grid: 1 adds fresh noise each step as DDPM does, which gives short-trained
    /// models clean backgrounds; 0 is deterministic.
    pub sample_eta: f64,
    /// Sampler of the final grid (checkpoints from before this setting used DDIM).
    #[serde(default = "SamplerKind::ddim")]
    pub sampler: SamplerKind,
    /// Steps between preview grids from the EMA weights (`samples/step-NNNNNN.png`); 0 = none.
    #[serde(default)]
    pub sample_every: u64,
    /// Min-SNR-gamma loss weighting (Hang et al. 2023): each image's loss is scaled by
    /// min(SNR_t, gamma) / SNR_t, so the many easy low-noise timesteps stop dominating; 0 = off.
    #[serde(default)]
    pub min_snr_gamma: f64,
    /// How many of the built-in digits `data = "builtin"` trains on (checkpoints from before
    /// this setting used the first 1000).
    #[serde(default = "old_builtin_digits")]
    pub builtin_digits: usize,
}

fn old_builtin_digits() -> usize {
    1000
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            steps: DEFAULT_STEPS,
            batch: DEFAULT_BATCH,
            lr: 2e-3,
            warmup: None,
            weight_decay: 0.0,
            adam_beta1: 0.9,
            adam_beta2: 0.999,
            clip_grad: 1.0,
            ema_decay: 0.999,
            schedule: ScheduleKind::Linear,
            timesteps: 1000,
            seed: 0,
            data: "builtin".into(),
            checkpoint_every: 100,
            samples: 36,
            sample_steps: 100,
            sample_eta: 1.0,
            sampler: SamplerKind::Ddim,
            sample_every: 100,
            min_snr_gamma: 5.0,
            builtin_digits: crate::data::BUILTIN_DIGITS,
        }
    }
}

/// Every key `[train]` and `--set` accept, with a one-line meaning (printed in errors).
pub const KEYS: &[(&str, &str)] = &[
    ("steps", "optimizer steps in the run"),
    ("batch", "images per step"),
    ("lr", "peak learning rate"),
    ("warmup", "linear warmup steps (default 5% of steps)"),
    ("weight_decay", "AdamW decoupled weight decay"),
    ("adam_beta1", "AdamW beta1"),
    ("adam_beta2", "AdamW beta2"),
    ("clip_grad", "gradient-norm clipping threshold, 0 = off"),
    ("ema_decay", "maximum EMA decay (warms up from 0.1)"),
    ("schedule", "noise schedule: \"linear\" or \"cosine\""),
    ("timesteps", "diffusion steps T"),
    ("seed", "seed for weights, data order and noise"),
    ("data", "\"builtin\", an IDX file or a folder of PNG/JPEG"),
    ("checkpoint_every", "steps between checkpoints"),
    ("samples", "images in the final sample grid, 0 = none"),
    ("sample_steps", "DDIM steps for the final grid, 0 = DDPM over all T"),
    ("sample_eta", "DDIM eta for the final grid: 1 stochastic, 0 deterministic"),
    ("sampler", "sampler for the grids: \"ddpm\", \"ddim\" or \"dpmpp2m\""),
    ("sample_every", "steps between preview grids in samples/, 0 = none"),
    ("min_snr_gamma", "min-SNR-gamma loss weighting, 0 = off"),
    ("builtin_digits", "how many built-in MNIST digits data = \"builtin\" uses"),
];

/// Settings that decide what a resumed run computes; they must not change on `--resume`.
pub const RECIPE_KEYS: &[&str] = &[
    "batch",
    "lr",
    "warmup",
    "weight_decay",
    "adam_beta1",
    "adam_beta2",
    "clip_grad",
    "ema_decay",
    "schedule",
    "timesteps",
    "seed",
    "data",
    "min_snr_gamma",
    "builtin_digits",
];

/// A recipe plus where each value came from.
#[derive(Debug, Clone)]
pub struct Recipe {
    pub config: TrainConfig,
    pub origins: BTreeMap<&'static str, Origin>,
}

impl Recipe {
    pub fn new(config: TrainConfig, origin: Origin) -> Recipe {
        Recipe { config, origins: KEYS.iter().map(|(k, _)| (*k, origin)).collect() }
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

    /// Sets one key from a TOML value, with a message naming the key and the expected type.
    pub fn set(&mut self, key: &str, value: &toml::Value, origin: Origin) -> Result<(), String> {
        let c = &mut self.config;
        let Some(&(name, _)) = KEYS.iter().find(|(k, _)| *k == key) else {
            return Err(unknown_key(key));
        };
        match name {
            "steps" => c.steps = ranged_int(key, value)?,
            "batch" => c.batch = ranged_int(key, value)? as usize,
            "lr" => c.lr = positive_float(key, value)?,
            "warmup" => c.warmup = Some(int(key, value)?),
            "weight_decay" => c.weight_decay = non_negative_float(key, value)?,
            "adam_beta1" => c.adam_beta1 = unit_float(key, value)?,
            "adam_beta2" => c.adam_beta2 = unit_float(key, value)?,
            "clip_grad" => c.clip_grad = non_negative_float(key, value)?,
            "ema_decay" => c.ema_decay = unit_float(key, value)?,
            "schedule" => {
                let s = string(key, value)?;
                c.schedule = ScheduleKind::parse(&s)
                    .ok_or_else(|| format!("`{key}`: expected \"linear\" or \"cosine\", found \"{s}\""))?
            }
            "timesteps" => c.timesteps = ranged_int(key, value)? as usize,
            "seed" => c.seed = int(key, value)?,
            "data" => c.data = string(key, value)?,
            "checkpoint_every" => c.checkpoint_every = ranged_int(key, value)?,
            "samples" => c.samples = ranged_int(key, value)? as usize,
            "sample_steps" => c.sample_steps = int(key, value)? as usize,
            "sample_eta" => {
                let eta = non_negative_float(key, value)?;
                if eta > 1.0 {
                    return Err(format!("`{key}`: expected a number in [0, 1], found {eta}"));
                }
                c.sample_eta = eta
            }
            "sampler" => {
                let s = string(key, value)?;
                c.sampler = SamplerKind::parse(&s)
                    .ok_or_else(|| format!("`{key}`: expected {}, found \"{s}\"", SamplerKind::NAMES))?
            }
            "sample_every" => c.sample_every = int(key, value)?,
            "min_snr_gamma" => c.min_snr_gamma = non_negative_float(key, value)?,
            "builtin_digits" => c.builtin_digits = ranged_int(key, value)? as usize,
            _ => unreachable!("every key in KEYS is handled"),
        }
        self.origins.insert(name, origin);
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
        let c = &self.config;
        let values: BTreeMap<&str, String> = [
            ("steps", c.steps.to_string()),
            ("batch", c.batch.to_string()),
            ("lr", format!("{:e}", c.lr)),
            ("warmup", format!("{} steps", c.warmup_steps())),
            ("weight_decay", c.weight_decay.to_string()),
            ("adam_beta1", c.adam_beta1.to_string()),
            ("adam_beta2", c.adam_beta2.to_string()),
            ("clip_grad", if c.clip_grad > 0.0 { c.clip_grad.to_string() } else { "off".into() }),
            ("ema_decay", c.ema_decay.to_string()),
            ("schedule", c.schedule.to_string()),
            ("timesteps", c.timesteps.to_string()),
            ("seed", c.seed.to_string()),
            ("data", c.data.clone()),
            ("checkpoint_every", c.checkpoint_every.to_string()),
            ("samples", c.samples.to_string()),
            ("sample_steps", c.sample_steps.to_string()),
            ("sample_eta", c.sample_eta.to_string()),
            ("sampler", c.final_sampler().to_string()),
            ("sample_every", if c.sample_every > 0 { c.sample_every.to_string() } else { "off".into() }),
            ("min_snr_gamma", if c.min_snr_gamma > 0.0 { c.min_snr_gamma.to_string() } else { "off".into() }),
            ("builtin_digits", c.builtin_digits.to_string()),
        ]
        .into_iter()
        .collect();
        KEYS.iter()
            .map(|(k, _)| {
                let origin = self.origins.get(k).copied().unwrap_or(Origin::Default);
                format!("  {k:<17} {:<22} ({})", values[k], origin.label())
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl TrainConfig {
    /// Checks every integer setting against [`INT_RANGES`] (values outside them would exhaust
    /// memory or divide by zero), for recipes from any source, checkpoint metadata included.
    pub fn check_ranges(&self) -> Result<(), String> {
        let values = [
            ("steps", self.steps),
            ("batch", self.batch as u64),
            ("timesteps", self.timesteps as u64),
            ("samples", self.samples as u64),
            ("checkpoint_every", self.checkpoint_every),
            ("builtin_digits", self.builtin_digits as u64),
        ];
        for (key, value) in values {
            let &(_, lo, hi) = INT_RANGES.iter().find(|(k, _, _)| *k == key).expect("key has a range");
            if !(lo..=hi).contains(&value) {
                return Err(format!("`{key}`: expected {}, found {value}", expected_range(lo, hi)));
            }
        }
        Ok(())
    }

    /// The final grid's sampler: `sample_steps` = 0 means DDPM over every timestep.
    pub fn final_sampler(&self) -> crate::diffusion::Sampler {
        let kind = if self.sample_steps == 0 { SamplerKind::Ddpm } else { self.sampler };
        kind.with_steps(self.sample_steps, self.sample_eta as f32)
    }

    pub fn warmup_steps(&self) -> u64 {
        self.warmup.unwrap_or(self.steps / 20)
    }

    /// Recipe keys whose values differ between `self` and `other`, as `key: a -> b`.
    pub fn recipe_differences(&self, other: &TrainConfig) -> Vec<String> {
        let a = serde_json::to_value(self).expect("config serialises");
        let b = serde_json::to_value(other).expect("config serialises");
        RECIPE_KEYS
            .iter()
            .filter(|k| a[**k] != b[**k])
            .map(|k| format!("{k}: {} -> {}", a[*k], b[*k]))
            .collect()
    }
}

/// The 1-based line of `key = ...` inside the `[train]` section of a model file's text, so
/// messages can point at it (the parsed table has no positions).
pub fn train_key_line(source: &str, key: &str) -> Option<usize> {
    let mut in_train = false;
    for (i, line) in source.lines().enumerate() {
        let t = line.trim();
        if t.starts_with('[') {
            in_train = t.trim_start_matches('[').trim_end_matches(']').trim() == "train";
        } else if in_train {
            let name = t.split('=').next().unwrap_or("").trim().trim_matches('"');
            if t.contains('=') && name == key {
                return Some(i + 1);
            }
        }
    }
    None
}

fn unknown_key(key: &str) -> String {
    let best = KEYS
        .iter()
        .map(|(k, _)| (strsim::levenshtein(key, k), *k))
        .min()
        .filter(|(d, k)| *d <= 2.max(k.len() / 3));
    let known = KEYS.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ");
    match best {
        Some((_, k)) => format!("unknown training setting `{key}`; did you mean `{k}`? (known: {known})"),
        None => format!("unknown training setting `{key}` (known: {known})"),
    }
}

fn type_name(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => format!("the string \"{s}\""),
        other => format!("{} {other}", other.type_str()),
    }
}

fn int(key: &str, v: &toml::Value) -> Result<u64, String> {
    match v.as_integer() {
        Some(i) if i >= 0 => Ok(i as u64),
        _ => Err(format!("`{key}`: expected a non-negative integer, found {}", type_name(v))),
    }
}

/// Inclusive ranges of the integer settings that size allocations or divide: larger values would
/// exhaust memory long before they were useful.
const INT_RANGES: &[(&str, u64, u64)] = &[
    ("steps", 1, u64::MAX),
    ("batch", 1, 4096),
    ("timesteps", 1, 100_000),
    ("samples", 0, 4096),
    ("checkpoint_every", 1, u64::MAX),
    ("builtin_digits", 1, crate::data::BUILTIN_DIGITS as u64),
];

fn expected_range(lo: u64, hi: u64) -> String {
    match (lo, hi) {
        (1, u64::MAX) => "a positive integer".into(),
        (lo, u64::MAX) => format!("an integer of at least {lo}"),
        (lo, hi) => format!("an integer from {lo} to {hi}"),
    }
}

/// An integer setting within its [`INT_RANGES`] entry.
fn ranged_int(key: &str, v: &toml::Value) -> Result<u64, String> {
    let &(_, lo, hi) = INT_RANGES.iter().find(|(k, _, _)| *k == key).expect("key has a range");
    let expected = expected_range(lo, hi);
    match v.as_integer() {
        Some(i) if i >= 0 && (lo..=hi).contains(&(i as u64)) => Ok(i as u64),
        Some(i) => Err(format!("`{key}`: expected {expected}, found {i}")),
        None => Err(format!("`{key}`: expected {expected}, found {}", type_name(v))),
    }
}

fn float(key: &str, v: &toml::Value) -> Result<f64, String> {
    v.as_float()
        .or_else(|| v.as_integer().map(|i| i as f64))
        .filter(|f| f.is_finite())
        .ok_or_else(|| format!("`{key}`: expected a number, found {}", type_name(v)))
}

fn positive_float(key: &str, v: &toml::Value) -> Result<f64, String> {
    let f = float(key, v)?;
    if f > 0.0 {
        Ok(f)
    } else {
        Err(format!("`{key}`: expected a number > 0, found {f}"))
    }
}

fn non_negative_float(key: &str, v: &toml::Value) -> Result<f64, String> {
    let f = float(key, v)?;
    if f >= 0.0 {
        Ok(f)
    } else {
        Err(format!("`{key}`: expected a number >= 0, found {f}"))
    }
}

fn unit_float(key: &str, v: &toml::Value) -> Result<f64, String> {
    let f = float(key, v)?;
    if (0.0..1.0).contains(&f) {
        Ok(f)
    } else {
        Err(format!("`{key}`: expected a number in [0, 1), found {f}"))
    }
}

fn string(key: &str, v: &toml::Value) -> Result<String, String> {
    v.as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("`{key}`: expected a string, found {}", type_name(v)))
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
    fn finds_the_line_of_a_key_in_the_train_section_only() {
        let src = "[input]\nsteps = 1\n\n[train]\n# comment\nlr = 1e-3\n  steps=5\n[blocks]\nbatch = 2\n";
        assert_eq!(train_key_line(src, "steps"), Some(7));
        assert_eq!(train_key_line(src, "lr"), Some(6));
        assert_eq!(train_key_line(src, "batch"), None);
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
        for key in ["sampler", "sample_every", "min_snr_gamma", "builtin_digits"] {
            old.as_object_mut().unwrap().remove(key).expect("the key is serialised");
        }
        let c: TrainConfig = serde_json::from_value(old).unwrap();
        assert_eq!(
            (c.sampler, c.sample_every, c.min_snr_gamma, c.builtin_digits),
            (SamplerKind::Ddim, 0, 0.0, 1000)
        );
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
