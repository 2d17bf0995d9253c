//! Help for fields the parser does not know: did-you-mean, the name another framework uses
//! (`kernel_size`), a keyword where a number belongs (`padding = "same"`), a field of another op
//! or of another section.

use toml::de::DeValue;

use super::words::list;
use super::{Parser, Section};
use crate::dsl::diag::{self, Diagnostic};
use crate::dsl::schema::{MODEL_FIELDS, OPS, SECTIONS};
use crate::dsl::OpKind;

impl Parser<'_> {
    /// Reports fields of `s` that are neither in `fields` nor in `common`.
    pub(super) fn unknown_fields(&mut self, s: &Section<'_, '_>, fields: &[&str], common: &[&str]) {
        self.suggested.clear();
        for (key, value) in s.table {
            let k = key.get_ref().as_ref();
            if fields.contains(&k) || common.contains(&k) {
                continue;
            }
            let written = self.source.get(value.span()).unwrap_or("...");
            let all: Vec<&str> = common.iter().chain(fields).copied().collect();
            let near = other_spelling(k)
                .filter(|f| fields.contains(f))
                .or_else(|| diag::did_you_mean(k, all.iter().copied()));
            if let Some(near) = near {
                self.suggested.push(near.to_string());
            }
            let help = match near {
                Some(near) if s.get(near).is_some() => {
                    format!(
                        "`{near}` is mdc's name for it, and this block sets `{near}` already: remove `{k}`"
                    )
                }
                Some(near) if other_spelling(k).is_some() => {
                    format!("mdc calls it `{near}`: write `{near} = {written}`")
                }
                Some(near) => format!("did you mean `{near}`?"),
                None => match (k, s.kind) {
                    ("channels", Some(kind)) => format!(
                        "`{}` keeps the channels of its input ({}); to change them, follow it with \
                         a `conv` with `kernel = 1`",
                        kind.name(),
                        kind.spec().doc
                    ),
                    (_, Some(kind)) => match OPS.iter().find(|o| o.kind.field(k).is_some()) {
                        // `stride` on a downsample: a field of another op.
                        Some(owner) => format!(
                            "`{k}` is a field of `{}`; a `{}` is {}, and its fields are {}",
                            owner.name,
                            kind.name(),
                            kind.spec().doc,
                            list(&all)
                        ),
                        None => format!("the fields here are {}", list(&all)),
                    },
                    _ => format!("the fields here are {}", list(&all)),
                },
            };
            self.error(
                Diagnostic::error(format!("unknown field `{k}`"), key.span())
                    .block(s.label.clone())
                    .field(k)
                    .expected(format!("one of {}", list(&all)))
                    .found(format!("`{k}`"))
                    .help(help),
            );
        }
    }
}

/// Help for a keyword another framework takes where mdc wants a number (`padding = "same"`).
pub(super) fn keyword_help(field: &str, word: &str, s: &Section<'_, '_>) -> Option<String> {
    let kernel = s.get("kernel").and_then(|k| match k.get_ref() {
        DeValue::Integer(i) => i.as_str().parse::<usize>().ok(),
        _ => None,
    });
    match (field, word.to_ascii_lowercase().as_str()) {
        ("padding", "same") => Some(match kernel {
            Some(k) if k % 2 == 1 => format!(
                "\"same\" padding for kernel k is (k - 1) / 2: write `padding = {}` for kernel {k}",
                (k - 1) / 2
            ),
            _ => {
                "\"same\" padding for an odd kernel k is (k - 1) / 2 (e.g. `padding = 1` for kernel 3)".into()
            }
        }),
        ("padding", "valid") => Some("\"valid\" is no padding: write `padding = 0`, or leave it out".into()),
        (_, "auto" | "none" | "default") => Some(format!("leave `{field}` out to get its default")),
        _ => None,
    }
}

/// The field mdc has for a name other frameworks use (PyTorch's `kernel_size`, `num_groups`).
pub(super) fn other_spelling(field: &str) -> Option<&'static str> {
    Some(match field {
        "kernel_size" | "ksize" | "k" => "kernel",
        "out_channels" | "out_ch" | "filters" | "dim_out" | "ch" | "channel" => "channels",
        "num_groups" | "groups_norm" | "norm_groups" => "groups",
        "num_heads" | "n_heads" | "nheads" | "head" => "heads",
        "pad" | "pads" | "pad_size" => "padding",
        "strides" | "step" => "stride",
        "out_features" | "out_dim" | "units" | "dim" | "hidden" => "features",
        "input" | "inputs" | "from" | "src" => "in",
        "type" | "kind" | "layer" => "op",
        _ => return None,
    })
}

/// For a field written at the top level, the section it belongs in.
pub(super) fn home_section(field: &str) -> Option<String> {
    let section = if MODEL_FIELDS.contains(&field) {
        "model"
    } else if let Some(spec) = SECTIONS.iter().find(|s| s.has_field(field)) {
        spec.name
    } else if OpKind::from_name(field).is_some() {
        "blocks"
    } else {
        return None;
    };
    Some(format!("`{field}` belongs in [{section}]: move it below the `[{section}]` line"))
}
