//! One field's value: strings, integers (literals or references to named values) and numbers,
//! each checked against its range.

use toml::de::DeValue;
use toml::Spanned;

use super::vars::{var_base, VarValue};
use super::words::describe;
use super::{Parser, Section};
use crate::dsl::diag::Diagnostic;
use crate::dsl::schema::{FieldDefault, FieldSpec};
use crate::dsl::Val;

impl Parser<'_> {
    pub(super) fn string(&mut self, s: &Section<'_, '_>, field: &str, required: bool) -> Option<Val<String>> {
        let Some(v) = s.get(field) else {
            if required && !self.suggested.iter().any(|f| f == field) {
                self.missing(s, field, "a block name, e.g. `output = \"out\"`");
            }
            return None;
        };
        match v.get_ref() {
            DeValue::String(text) => Some(Val::plain(text.to_string(), v.span())),
            other => {
                self.error(
                    Diagnostic::error("wrong value type", v.span())
                        .block(s.label.clone())
                        .field(field)
                        .expected("a string")
                        .found(describe(other)),
                );
                None
            }
        }
    }

    /// An integer field in `lo..=hi`: a literal or a reference to a named value.
    pub(super) fn int(
        &mut self,
        s: &Section<'_, '_>,
        field: &str,
        default: FieldDefault,
        lo: usize,
        hi: usize,
    ) -> Option<Val<usize>> {
        let Some(v) = s.get(field) else {
            return match default {
                FieldDefault::Int(d) => Some(Val::plain(d, s.span.clone())),
                FieldDefault::Float(_) | FieldDefault::Block(_) => unreachable!("not an integer default"),
                FieldDefault::Var(var) => match self.vars.get(var) {
                    Some((VarValue::Int(d), def)) => {
                        self.used_vars.insert(var.to_string());
                        // Out of range: point at the definition in [vars], which is what to edit.
                        let v = Val { value: *d, span: def.clone(), origin: Some((var.into(), def.clone())) };
                        let label = s.label.clone();
                        self.check_range(&v, &label, field, lo, hi).then_some(v)
                    }
                    _ => {
                        let takes = format!("`{field}` (defaults to `{var}` of [vars])");
                        self.var_miss(var, s, field, None, s.span.clone(), takes);
                        None
                    }
                },
                FieldDefault::Required if self.suggested.iter().any(|f| f == field) => None,
                FieldDefault::Required => {
                    self.missing(
                        s,
                        field,
                        format!("`{field} = <integer>` or `{field} = \"<name from [vars]>\"`"),
                    );
                    None
                }
            };
        };
        let value = match v.get_ref() {
            DeValue::Integer(_) => Val::plain(self.literal(v, &s.label, field, lo, hi)?, v.span()),
            DeValue::String(text) if text.trim().parse::<i64>().is_ok() => {
                self.error(
                    Diagnostic::error("wrong value type: numbers are written without quotes", v.span())
                        .block(s.label.clone())
                        .field(field)
                        .expected("an integer")
                        .found(describe(v.get_ref()))
                        .help(format!("write `{field} = {}`", text.trim())),
                );
                return None;
            }
            DeValue::String(text) => {
                let takes = takes_text(s, field, lo, hi);
                let (value, origin) = self.resolve(text, v.span(), s, field, &takes)?;
                Val { value, span: v.span(), origin: Some((text.to_string(), origin)) }
            }
            other => {
                self.error(
                    Diagnostic::error("wrong value type", v.span())
                        .block(s.label.clone())
                        .field(field)
                        .expected("an integer, or the name of a value from [vars] such as \"channels[1]\"")
                        .found(describe(other)),
                );
                return None;
            }
        };
        self.check_range(&value, &s.label, field, lo, hi).then_some(value)
    }

    /// A number field in `lo..=hi` (an integer is taken as a number too).
    pub(super) fn float(
        &mut self,
        s: &Section<'_, '_>,
        spec: &FieldSpec,
        lo: f64,
        hi: f64,
    ) -> Option<Val<f64>> {
        let field = spec.name;
        let Some(v) = s.get(field) else {
            return match spec.default {
                FieldDefault::Float(d) => Some(Val::plain(d, s.span.clone())),
                _ if self.suggested.iter().any(|f| f == field) => None,
                _ => {
                    self.missing(s, field, format!("`{field} = <number>`"));
                    None
                }
            };
        };
        let value = match v.get_ref() {
            DeValue::Float(_) | DeValue::Integer(_) => plain_value(v.get_ref()).and_then(|p| match p {
                toml::Value::Float(f) => Some(f),
                toml::Value::Integer(i) => Some(i as f64),
                _ => None,
            }),
            _ => None,
        };
        let Some(value) = value else {
            self.error(
                Diagnostic::error("wrong value type", v.span())
                    .block(s.label.clone())
                    .field(field)
                    .expected("a number")
                    .found(describe(v.get_ref())),
            );
            return None;
        };
        if !(lo..=hi).contains(&value) {
            self.error(
                Diagnostic::error("the value is out of range", v.span())
                    .block(s.label.clone())
                    .field(field)
                    .expected(format!("a number from {lo} to {hi}"))
                    .found(value.to_string()),
            );
            return None;
        }
        Some(Val::plain(value, v.span()))
    }

    /// A required field that `s` lacks.
    fn missing(&mut self, s: &Section<'_, '_>, field: &str, expected: impl Into<String>) {
        self.error(
            Diagnostic::error(format!("missing field `{field}`"), s.span.clone())
                .block(s.label.clone())
                .field(field)
                .expected(expected),
        );
    }

    pub(super) fn literal(
        &mut self,
        v: &Spanned<DeValue<'_>>,
        label: &str,
        field: &str,
        lo: usize,
        hi: usize,
    ) -> Option<usize> {
        let DeValue::Integer(i) = v.get_ref() else { return None };
        match i64::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) if n >= 0 && (n as u64) <= usize::MAX as u64 => Some(n as usize),
            _ => {
                self.error(
                    Diagnostic::error("the value is out of range", v.span())
                        .block(label.to_string())
                        .field(field.to_string())
                        .expected(format!("an integer from {lo} to {hi}"))
                        .found(i.as_str().to_string()),
                );
                None
            }
        }
    }

    pub(super) fn check_range(
        &mut self,
        v: &Val<usize>,
        label: &str,
        field: &str,
        lo: usize,
        hi: usize,
    ) -> bool {
        if (lo..=hi).contains(&v.value) {
            return true;
        }
        // A [vars] value out of range is one error at its definition, naming the blocks.
        if let Some((name, def)) = v.origin.as_ref().filter(|(n, _)| !n.starts_with("input.")) {
            let var = var_base(name).to_string();
            if let Some((_, users)) = self.var_errors.get_mut(&var) {
                users.push(label.to_string());
                return false;
            }
            let expected = int_range(lo, hi);
            let message = match field == var {
                true => format!("`{name}` = {} is out of range", v.value),
                false => format!("`{name}` = {} is out of range for `{field}`", v.value),
            };
            let d = Diagnostic::error(message, def.clone())
                .block("[vars]")
                .field(var.clone())
                .expected(expected)
                .found(v.value.to_string());
            self.var_errors.insert(var, (self.diags.len(), vec![label.to_string()]));
            self.error(d);
            return false;
        }
        let mut d = Diagnostic::error("the value is out of range", v.span.clone())
            .block(label.to_string())
            .field(field.to_string())
            .expected(int_range(lo, hi))
            .found(v.value.to_string());
        if let Some((name, _)) = &v.origin {
            d = d.note(format!("`{name}` is {}", v.value));
        }
        self.error(d);
        false
    }
}

/// What an integer field takes, for messages: "an integer from 0 to 63 (zeros added on each side)".
pub(super) fn takes_text(s: &Section<'_, '_>, field: &str, lo: usize, hi: usize) -> String {
    let range = int_range(lo, hi);
    match s.kind.and_then(|k| k.field(field)) {
        Some(spec) => format!("{range} ({})", spec.doc),
        None => range,
    }
}

/// The integers `lo..=hi` in words: "a positive integer up to 64", "an integer from 0 to 63".
fn int_range(lo: usize, hi: usize) -> String {
    if lo == 1 {
        format!("a positive integer up to {hi}")
    } else {
        format!("an integer from {lo} to {hi}")
    }
}

/// A TOML value as the `toml` crate's plain [`toml::Value`] (for `[train]` settings).
pub(super) fn plain_value(v: &DeValue<'_>) -> Option<toml::Value> {
    Some(match v {
        DeValue::String(s) => toml::Value::String(s.to_string()),
        DeValue::Integer(i) => toml::Value::Integer(i64::from_str_radix(i.as_str(), i.radix()).ok()?),
        DeValue::Float(f) => toml::Value::Float(f.as_str().replace('_', "").parse().ok()?),
        DeValue::Boolean(b) => toml::Value::Boolean(*b),
        DeValue::Datetime(d) => toml::Value::Datetime(*d),
        DeValue::Array(items) => {
            toml::Value::Array(items.iter().map(|i| plain_value(i.get_ref())).collect::<Option<_>>()?)
        }
        DeValue::Table(t) => toml::Value::Table(
            t.iter()
                .map(|(k, v)| Some((k.get_ref().to_string(), plain_value(v.get_ref())?)))
                .collect::<Option<_>>()?,
        ),
    })
}
