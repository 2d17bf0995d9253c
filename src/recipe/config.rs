//! What a recipe implies beyond its settings (the final sampler, the guide's step, the warmup),
//! and what is derived from the table (the recipe keys, the table in docs/train.md).

use super::value::{Limits, OnResume};
use super::{TrainConfig, SETTINGS};
use crate::diffusion::SamplerKind;

/// Names of the settings that decide what a resumed run computes.
pub fn recipe_keys() -> impl Iterator<Item = &'static str> {
    SETTINGS.iter().filter(|s| s.on_resume == OnResume::Fixed).map(|s| s.name)
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

/// The table of `[train]` settings in docs/train.md, generated from [`SETTINGS`].
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
