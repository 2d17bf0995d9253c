//! The `[model] output` block: that it exists and gives the input's shape.

use super::{vertex_of_block, vertex_x, Build};
use crate::dsl::diag::{did_you_mean, suggestion};
use crate::dsl::Diagnostic;
use crate::graph::Shape;

impl<'f> Build<'f> {
    pub(super) fn check_output(&mut self) {
        let Some(r) = &self.file.output else { return };
        let Some(&v) = self.by_name.get(r.value.as_str()) else {
            self.diags.push(
                Diagnostic::error(format!("no block named `{}`", r.value), r.span.clone())
                    .block("[model]")
                    .field("output")
                    .expected("the block that predicts the noise")
                    .found(format!("`{}`", r.value))
                    .maybe_help(self.missing_output_help(&r.value)),
            );
            return;
        };
        let (Some(out), Some(x)) = (self.value[v.index()], self.value[vertex_x().index()]) else { return };
        self.output = Some(out);
        let (want, got) = (self.builder.shape(x).clone(), self.builder.shape(out).clone());
        if want == got {
            return;
        }
        let mut help = String::from("the model predicts the noise added to `x`, so it must return x's shape");
        if let (Some((wc, wh, ww)), Some((gc, gh, gw))) = (want.as_image(), got.as_image()) {
            if wc != gc {
                help.push_str(&self.output_channels_help(&r.value, &want, wc));
            }
            if (wh, ww) != (gh, gw) {
                self.spatial_mismatches.push("[model]".into());
                help.push_str("; ");
                help.push_str(&self.size_help(None, None));
            }
        }
        self.diags.push(
            Diagnostic::error("the output shape differs from the input shape", r.span.clone())
                .block("[model]")
                .field("output")
                .expected(format!("{want} (the shape of `x`)"))
                .found(format!("`{}` gives {got}", r.value))
                .help(help),
        );
    }

    /// When `[model] output` names no block (the output block was renamed, most often): the
    /// block that nothing reads and that gives x's shape, as an output does; among several, the
    /// one whose name is close; with none, the closest name.
    fn missing_output_help(&self, name: &str) -> Option<String> {
        let mut names: Vec<&str> = self.file.blocks.iter().map(|b| b.name.as_str()).collect();
        names.sort_unstable();
        let Some(want) = self.value[vertex_x().index()].map(|x| self.shape_of(x)) else {
            return suggestion(name, names);
        };
        let fitting: Vec<&str> = self
            .unread_blocks()
            .into_iter()
            .filter(|b| self.value[self.by_name[b].index()].is_some_and(|id| self.shape_of(id) == want))
            .collect();
        let pick = match fitting.as_slice() {
            [one] => Some(*one),
            several => did_you_mean(name, several.iter().copied()),
        };
        match pick {
            _ if fitting.is_empty() => suggestion(name, names),
            Some(one) => {
                Some(format!("did you mean `{one}`, which gives x's shape {want} and which nothing reads?"))
            }
            None => {
                let listed: Vec<String> = fitting.iter().map(|n| format!("`{n}`")).collect();
                Some(format!(
                    "blocks that give x's shape {want} and that nothing reads: {}",
                    listed.join(", ")
                ))
            }
        }
    }

    /// What to change when the output block `out` gives the wrong channel count: its own
    /// `channels` when it has one; else another block that gives x's shape, or a conv to add.
    pub(super) fn output_channels_help(&self, out: &str, want: &Shape, channels: usize) -> String {
        let block = self.file.blocks.iter().find(|b| b.name == out);
        let kind = block.and_then(|b| b.kind.as_ref()).map(|k| k.value);
        if kind.is_some_and(|k| k.fields().any(|f| f == "channels")) {
            return format!(
                "; give `{out}` {channels} output channels (e.g. `channels = \"input.channels\"`)"
            );
        }
        let keeps =
            kind.map(|k| format!("; a `{}` keeps its input's channel count", k.name())).unwrap_or_default();
        let fitting = self.file.blocks.iter().enumerate().find(|(i, b)| {
            b.name != out
                && self.value[vertex_of_block(*i).index()].is_some_and(|id| self.shape_of(id) == want)
        });
        match fitting {
            Some((_, b)) => format!("{keeps}: did you mean `{}`, which gives {want}?", b.name),
            None => format!(
                "{keeps}: add a conv after `{out}` with `channels = \"input.channels\"` and make it the output"
            ),
        }
    }
}
