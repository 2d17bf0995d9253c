//! The training recipe: defaults, overridden by the model file's `[train]` section, overridden
//! by the command line. Every value remembers where it came from so the run can print it.
//!
//! The settings are declared once, in `settings.rs` (the file to edit to add one); `value.rs` holds
//! how a setting's value is read and checked, and `macros.rs` turns the table into
//! [`TrainConfig`] and [`SETTINGS`].

#[macro_use]
mod macros;
mod config;
mod settings;
mod value;

pub use config::{recipe_keys, settings_markdown};
pub use settings::{TrainConfig, DEFAULT_BATCH, DEFAULT_STEPS, SETTINGS};
pub use value::{Choice, Limits, OnResume, Setting, SettingValue};

use std::collections::BTreeMap;

use crate::base::suggest::did_you_mean;

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
        let help = match did_you_mean(key, names()) {
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
    match did_you_mean(key, SETTINGS.iter().map(|s| s.name)) {
        Some(k) => format!("unknown training setting `{key}`; did you mean `{k}`? (known: {known})"),
        None => format!("unknown training setting `{key}` (known: {known})"),
    }
}

#[cfg(test)]
mod tests;
