//! The sections besides `[vars]` and `[blocks]`: the plain-field sections declared in
//! [`crate::dsl::schema`] (`[input]`, `[time]`, `[condition]`), `[model]` and `[train]`.

use super::blocks::Fields;
use super::values::plain_value;
use super::{Parser, Section};
use crate::dsl::diag::Diagnostic;
use crate::dsl::schema::{FieldReader, SectionSpec, MODEL_FIELDS};
use crate::dsl::{Span, TrainEntry, TrainSection, Val};
use crate::recipe::check_setting;

impl Parser<'_> {
    /// A section of plain fields, read by its declaration: unknown fields, then each field.
    pub(super) fn plain_section<T>(
        &mut self,
        s: &Section<'_, '_>,
        spec: SectionSpec,
        read: fn(Span, &mut dyn FieldReader) -> Option<T>,
    ) -> Option<T> {
        let names: Vec<&str> = spec.field_names().collect();
        self.unknown_fields(s, &names, &[]);
        read(s.span.clone(), &mut Fields { p: self, s })
    }

    pub(super) fn model_section(&mut self, s: &Section<'_, '_>) -> (Option<String>, Option<Val<String>>) {
        self.unknown_fields(s, &MODEL_FIELDS, &[]);
        let name = self.string(s, "name", false).map(|v| v.value);
        let output = self.string(s, "output", true);
        (name, output)
    }

    /// `[train]`: every setting is checked against the training settings' table here, so
    /// `mdc check` reports a misspelt or out-of-range setting at its line.
    pub(super) fn train_section(&mut self, s: &Section<'_, '_>) -> TrainSection {
        let mut entries = Vec::new();
        for (key, value) in s.table {
            let name = key.get_ref().to_string();
            let Some(plain) = plain_value(value.get_ref()) else { continue };
            if let Err(problem) = check_setting(&name, &plain) {
                let d = Diagnostic::error(
                    problem.message,
                    if problem.unknown { key.span() } else { value.span() },
                )
                .block("[train]")
                .field(name.clone())
                .maybe_help(problem.help);
                self.error(d);
                continue;
            }
            entries.push(TrainEntry {
                key: Val::plain(name, key.span()),
                value: plain,
                value_span: value.span(),
            });
        }
        entries.sort_by_key(|e| e.key.span.start);
        TrainSection { span: s.span.clone(), entries }
    }
}
