//! The value machinery behind the settings table: the allowed [`Limits`] of a setting, how each
//! Rust type is read from TOML, checked and shown ([`SettingValue`]), and the named choices.

use crate::diffusion::{Prediction, SamplerKind, ScheduleKind};
use crate::kernels::Precision;

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

impl Limits {
    /// The same lower bound, now included (`>= lo`).
    pub const fn or_equal(self) -> Limits {
        match self {
            Limits::Float { lo, hi, hi_open, .. } => Limits::Float { lo, lo_open: false, hi, hi_open },
            other => other,
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

fn type_name(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => format!("the string \"{s}\""),
        other => format!("{} {other}", other.type_str()),
    }
}
