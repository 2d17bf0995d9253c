//! A primitive's typed [`ShapeError`] turned into a diagnostic at the user's block and field.

use super::Build;
use crate::dsl::{BlockDecl, BlockOp, Diagnostic, Val};
use crate::graph::{NodeError, NodeId};
use crate::ops::{Param, Rank, ShapeError};

impl<'f> Build<'f> {
    /// A primitive's shape rule that failed inside the block's expansion, reported at the
    /// user's block and the field the typed error points to: the `in` (or `time`) reference
    /// that fed the input at fault, or the parameter at fault.
    pub(super) fn shape_error(
        &mut self,
        block: &BlockDecl,
        op: &BlockOp,
        ins: &[NodeId],
        temb: Option<NodeId>,
        e: NodeError,
    ) -> Diagnostic {
        // The reference that gave the failing node its input k, when it is one of the block's.
        // A value named by both `in` and `time` is blamed on `time` when a vector (a time
        // embedding) was expected, else on `in`.
        let source = |k: usize, time_first: bool| -> Option<(&'static str, &Val<String>)> {
            let v = *e.inputs.get(k)?;
            let time = block.time.as_ref().filter(|_| temb == Some(v)).map(|r| ("time", r));
            let input = ins.iter().position(|&i| i == v).map(|j| ("in", &block.inputs[j]));
            if time_first {
                time.or(input)
            } else {
                input.or(time)
            }
        };
        let at = |field: &str, r: &Val<String>, message: String| {
            Diagnostic::error(message, r.span.clone()).block(block.name.clone()).field(field)
        };
        let params = BlockParams::of(op);
        let d = match &*e.error {
            ShapeError::WrongRank { input, expected, found } => {
                match source(*input, *expected == Rank::Vector) {
                    Some((field, r)) => {
                        at(field, r, format!("`{}` does not produce {}", r.value, expected.noun()))
                            .expected(expected.described())
                            .found(found.to_string())
                    }
                    None => self.inside(block, &e),
                }
            }
            ShapeError::ChannelMismatch { input, expected, found } => match source(*input, false) {
                Some((field, r)) => at(field, r, format!("`{}` gives {found} channels", r.value))
                    .expected(format!("{expected} channels"))
                    .found(found.to_string()),
                None => self.inside(block, &e),
            },
            ShapeError::NotDivisible { param: Param::Groups, value, channels } => {
                let written = block.field_spans.iter().any(|(f, _)| f == "groups");
                // Unwritten groups come from [vars]: then point at what set the channel count.
                let field = if written {
                    "groups"
                } else if params.channels.is_some() {
                    "channels"
                } else {
                    "in"
                };
                let mut d = self
                    .err(block, field, e.error.to_string())
                    .expected(format!("a channel count divisible by {value} (GroupNorm groups)"))
                    .found(format!("{channels} channels"))
                    .help(format!(
                        "use a multiple of {value} channels ({}), or groups that divide {channels}: {}",
                        nearby_multiples(*channels, *value),
                        divisors(*channels)
                    ));
                for v in [params.groups, params.channels].into_iter().flatten() {
                    d = origin_label(d, v);
                }
                d
            }
            ShapeError::NotDivisible { param, value, channels } => {
                let mut d = self
                    .err(block, param.field(), e.error.to_string())
                    .expected(format!("a number of {} dividing {channels}", param.field()))
                    .found(value.to_string())
                    .help(format!("{} that divide {channels}: {}", param.field(), divisors(*channels)));
                if let Some(v) = params.heads {
                    d = origin_label(d, v);
                }
                d
            }
            ShapeError::OutOfRange { param, value, expected } => self
                .err(block, param.field(), e.error.to_string())
                .expected(*expected)
                .found(value.to_string()),
            ShapeError::EmptyOutput { kernel, padding, height, width } => self
                .err(block, "kernel", e.error.to_string())
                .expected(format!(
                    "a kernel of at most {} (the padded input size)",
                    height.min(width) + 2 * padding
                ))
                .found(kernel.to_string())
                .help("an empty output: use a smaller kernel or more padding"),
            ShapeError::SpatialMismatch { inputs: (a, b), .. } => {
                match (source(*a, false), source(*b, false)) {
                    (Some((_, ra)), Some((_, rb))) => {
                        let d = self.mismatch(block, ins, "concat inputs differ in spatial size");
                        let pair = [(ra.value.as_str(), e.inputs[*a]), (rb.value.as_str(), e.inputs[*b])];
                        self.spatial_mismatches.push(block.name.clone());
                        d.expected("inputs with equal height and width")
                            .help(self.size_help(Some(block), Some(pair)))
                    }
                    _ => self.inside(block, &e),
                }
            }
            ShapeError::ShapeMismatch { inputs: (a, b), found: (sa, sb) } => {
                match (source(*a, false), source(*b, false)) {
                    (Some((_, ra)), Some((_, rb))) => {
                        let d = self
                            .mismatch(block, ins, "add needs inputs of the same shape")
                            .expected("equal shapes");
                        if let Some(help) = self.embedding_width_help(block, ins) {
                            return d.help(help);
                        }
                        if sa.0.get(1..) == sb.0.get(1..) {
                            return d;
                        }
                        let pair = [(ra.value.as_str(), e.inputs[*a]), (rb.value.as_str(), e.inputs[*b])];
                        self.spatial_mismatches.push(block.name.clone());
                        d.help(self.size_help(Some(block), Some(pair)))
                    }
                    _ => self.inside(block, &e),
                }
            }
            ShapeError::Arity { .. } => self.err(block, "in", e.error.to_string()),
        };
        d
    }

    /// When an `add` joins an embedding and a vector of another width (the time embedding, most
    /// often): which width to give the embedding.
    pub(super) fn embedding_width_help(&self, block: &BlockDecl, ins: &[NodeId]) -> Option<String> {
        let embedding = block
            .inputs
            .iter()
            .zip(ins)
            .find(|(_, &i)| matches!(self.builder.node(i).op, crate::graph::Op::Embedding(_)))?;
        let other = block.inputs.iter().zip(ins).find(|(r, _)| r.value != embedding.0.value)?;
        let width = self.shape_of(*other.1).as_vector()?;
        let via_time = if other.0.value == "time" { " (`\"time.hidden\"`)" } else { "" };
        Some(format!(
            "an embedding added to `{}` must be as wide: set `features = {width}`{via_time} in `{}`",
            other.0.value, embedding.0.value
        ))
    }

    /// Inputs that do not fit together, each named with its shape; the first input is the
    /// main path, the other of the pair the odd one out.
    pub(super) fn mismatch(&self, block: &BlockDecl, ins: &[NodeId], message: &str) -> Diagnostic {
        let described: Vec<String> = block
            .inputs
            .iter()
            .zip(ins)
            .map(|(r, &i)| format!("`{}` gives {}", r.value, self.shape_of(i)))
            .collect();
        // Each input is also labelled in the source with the shape it gives.
        let d = self.err(block, "in", message).found(described.join(", "));
        block
            .inputs
            .iter()
            .zip(ins)
            .fold(d, |d, (r, &i)| d.label(r.span.clone(), self.shape_of(i).to_string()))
    }

    /// A rule that failed on a value made inside the block's own expansion (not one it reads).
    pub(super) fn inside(&self, block: &BlockDecl, e: &NodeError) -> Diagnostic {
        Diagnostic::error(e.error.to_string(), block.name_span.clone()).block(block.name.clone()).note(
            format!(
                "while building `{}` as a `{}` (its node `{}`)",
                block.name,
                block.kind.as_ref().map_or("?", |k| k.value.name()),
                e.node
            ),
        )
    }
}

/// The numbers of a block that a shape error can be about, with where they were written.
#[derive(Default)]
struct BlockParams<'a> {
    channels: Option<&'a Val<usize>>,
    groups: Option<&'a Val<usize>>,
    heads: Option<&'a Val<usize>>,
}

impl<'a> BlockParams<'a> {
    fn of(op: &'a BlockOp) -> Self {
        match op {
            BlockOp::Resblock { channels, groups, .. } => {
                BlockParams { channels: Some(channels), groups: Some(groups), heads: None }
            }
            BlockOp::GroupNorm { groups } => BlockParams { groups: Some(groups), ..Default::default() },
            BlockOp::Attention { heads, groups } => {
                BlockParams { channels: None, groups: Some(groups), heads: Some(heads) }
            }
            // conv `channels` is the output count; no group or head rule reads it
            BlockOp::Conv { .. }
            | BlockOp::ConvTranspose { .. }
            | BlockOp::Silu
            | BlockOp::Linear { .. }
            | BlockOp::Downsample
            | BlockOp::Upsample
            | BlockOp::Concat
            | BlockOp::Add
            | BlockOp::Embedding { .. } => BlockParams::default(),
        }
    }
}

/// Labels where a value from `[vars]` was defined: "`channels[1]` = 60 is defined here".
pub(super) fn origin_label(d: Diagnostic, v: &Val<usize>) -> Diagnostic {
    match &v.origin {
        Some((name, span)) => d.label(span.clone(), format!("`{name}` = {} is defined here", v.value)),
        None => d,
    }
}

/// Divisors of n as a short list: "1, 2, 3, 4, 6, 12".
fn divisors(n: usize) -> String {
    let ds: Vec<String> = (1..=n).filter(|&d| n.is_multiple_of(d)).take(12).map(|d| d.to_string()).collect();
    ds.join(", ")
}

/// The multiples of m just below and above n: "56 or 64".
fn nearby_multiples(n: usize, m: usize) -> String {
    let lower = n / m * m;
    if lower == 0 {
        format!("{m}")
    } else {
        format!("{lower} or {}", lower + m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn lists_divisors_and_multiples() {
        assert_eq!(divisors(12), "1, 2, 3, 4, 6, 12");
        assert_eq!(nearby_multiples(60, 8), "56 or 64");
        assert_eq!(nearby_multiples(4, 8), "8");
    }
}
