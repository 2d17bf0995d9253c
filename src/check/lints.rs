//! Checks of a model that expanded: blocks nothing reads, an unused time embedding, a
//! declared condition that does not reach the output.

use petgraph::Direction;

use super::{vertex_of_block, vertex_time, vertex_y, Build};
use crate::dsl::{Diagnostic, OpKind};

impl<'f> Build<'f> {
    pub(super) fn check_unused(&mut self) {
        // Without a valid output every block looks unused; that is reported once, elsewhere.
        let output_known =
            self.file.output.as_ref().is_some_and(|o| self.by_name.contains_key(o.value.as_str()));
        if output_known {
            for name in self.unread_blocks() {
                let block = self.file.blocks.iter().find(|b| b.name == name).expect("a block of the file");
                // A block with an error of its own, or one that a misspelt reference probably
                // meant (the error's note names it), needs no second message.
                if block.op.is_none() || self.unknown_reference_reported {
                    continue;
                }
                self.diags.push(
                    Diagnostic::warning(
                        format!("the output of `{name}` is never used"),
                        block.name_span.clone(),
                    )
                    .block(name)
                    .help("use it as the `in` of another block, or remove it"),
                );
            }
        }
        if let Some(time) = &self.file.time {
            if self.g.neighbors_directed(vertex_time(), Direction::Outgoing).next().is_none() {
                self.diags.push(
                    Diagnostic::warning(
                        "the time embedding is never used: the model ignores the timestep",
                        time.span.clone(),
                    )
                    .block("[time]")
                    .help("resblocks read it; add a `resblock`, or remove [time]"),
                );
            }
        }
    }

    /// A declared condition must reach the output, or training on labels teaches nothing.
    pub(super) fn check_condition_read(&mut self) {
        let Some(cond) = &self.file.condition else { return };
        // An embedding that failed has its own error: the label not reaching the output follows from it.
        let failed_embedding = self.file.blocks.iter().enumerate().any(|(i, b)| {
            matches!(b.kind.as_ref().map(|k| k.value), Some(OpKind::Embedding))
                && self.value[vertex_of_block(i).index()].is_none()
        });
        if failed_embedding {
            return;
        }
        let classes = cond.classes.value;
        let readers = self.g.neighbors_directed(vertex_y(), Direction::Outgoing).count();
        let problem = if readers == 0 {
            format!("the model declares {classes} classes, but no block reads the label `y`")
        } else {
            // A reader with an error of its own has its message; without an output nothing reaches it.
            let (Some(label), Some(output)) = (self.value[vertex_y().index()], self.output) else { return };
            let mut reaches = vec![false; self.builder.len()];
            reaches[label] = true;
            for id in label + 1..self.builder.len() {
                reaches[id] = self.builder.node(id).inputs.iter().any(|&i| reaches[i]);
            }
            if reaches[output] {
                return;
            }
            // Where the label's path ends: those blocks' "never used" warnings are this error.
            let ends: Vec<&str> = self
                .unread_blocks()
                .into_iter()
                .filter(|b| {
                    (0..self.builder.len()).any(|id| reaches[id] && self.builder.node(id).block == *b)
                })
                .collect();
            self.diags.retain(|d| {
                !(d.severity == crate::dsl::Severity::Warning
                    && ends.iter().any(|b| d.block.as_deref() == Some(*b)))
            });
            let ends: Vec<String> = ends.iter().map(|b| format!("`{b}`")).collect();
            let end = match ends.as_slice() {
                [] => String::new(),
                _ => format!(": it stops at {}, which nothing reads", ends.join(", ")),
            };
            format!("the model declares {classes} classes, but the label `y` does not reach the output{end}")
        };
        self.diags.push(
            Diagnostic::error(problem, cond.span.clone())
                .block("[condition]")
                .expected("a path from `y` to the output: `y` -> embedding -> added to `time` -> the resblocks' `time`")
                .found("a condition the model ignores")
                .help("add `label = { op = \"embedding\", in = \"y\", features = \"time.hidden\" }` and \
                       `cond = { op = \"add\", in = [\"time\", \"label\"] }`, and set `time = \"cond\"` on the resblocks; \
                       or remove [condition] for an unconditional model"),
        );
    }
}
