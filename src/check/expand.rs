//! Expanding each vertex of the block graph into primitive nodes, in topological order.

use petgraph::graph::NodeIndex;

use super::{blocks, vertex_t, vertex_y, Build, Vertex};
use crate::dsl::{BlockDecl, BlockOp, Diagnostic};
use crate::graph::{NodeError, NodeId, PrimitiveGraphBuilder, Shape};
use crate::ops::{
    Add, Concat, ConvTranspose2d, Embedding, Input, Label, Linear, Param, ShapeError, Silu, Timestep,
};

impl<'f> Build<'f> {
    pub(super) fn expand_vertex(&mut self, v: NodeIndex) {
        let id = match self.g[v] {
            Vertex::X => self.file.input.as_ref().and_then(|input| {
                let op = Input {
                    channels: input.channels.value,
                    height: input.height.value,
                    width: input.width.value,
                };
                self.builder.add("x", "x", op, &[]).ok()
            }),
            Vertex::T => self.builder.add("t", "t", Timestep, &[]).ok(),
            Vertex::Time => self.expand_time(),
            Vertex::Y => {
                let label = self
                    .file
                    .condition
                    .as_ref()
                    .map(|c| Label { classes: c.classes.value, hide_below: c.hide_below.value });
                label.and_then(|label| self.builder.add("y", "y", label, &[]).ok())
            }
            Vertex::Block(i) => {
                let block = &self.file.blocks[i];
                if self.broken[v.index()] {
                    None
                } else {
                    let ins: Option<Vec<NodeId>> = block
                        .inputs
                        .iter()
                        .map(|r| self.value[self.by_name[r.value.as_str()].index()])
                        .collect();
                    let temb =
                        block.time.as_ref().map(|r| self.value[self.by_name[r.value.as_str()].index()]);
                    match (&block.op, ins, temb) {
                        (Some(op), Some(ins), None | Some(Some(_))) => {
                            let first_new = self.builder.len();
                            match self.expand_block(block, op, &ins, temb.flatten()) {
                                Ok(id) => match self.within_limits(first_new) {
                                    Ok(()) => Some(id),
                                    Err(msg) => {
                                        self.diags.push(
                                            Diagnostic::error(msg, block.name_span.clone())
                                                .block(block.name.clone())
                                                .help("mdc checks models up to 2^31 values per activation and 2^50 FLOPs per node; use smaller sizes"),
                                        );
                                        None
                                    }
                                },
                                Err(d) => {
                                    self.diags.push(d);
                                    None
                                }
                            }
                        }
                        _ => None,
                    }
                }
            }
        };
        self.value[v.index()] = id;
    }

    pub(super) fn expand_time(&mut self) -> Option<NodeId> {
        let time = self.file.time.as_ref()?;
        let t = self.value[vertex_t().index()]?;
        match blocks::time_mlp(&mut self.builder, "time", t, time.dim.value, time.hidden.value) {
            Ok(id) => Some(id),
            Err(e) => {
                let d = match *e.error {
                    ShapeError::OutOfRange { param: Param::Dim, value, expected } => Diagnostic::error(
                        "the sinusoidal embedding needs an even dimension",
                        time.dim.span.clone(),
                    )
                    .field("dim")
                    .expected(expected)
                    .found(value.to_string())
                    .help(format!("use {} or {}", value - 1, value + 1).replace("use 0 or", "use")),
                    other => Diagnostic::error(other.to_string(), time.span.clone()),
                };
                self.diags.push(d.block("[time]"));
                None
            }
        }
    }

    /// Expands the block into primitive nodes. The primitives' own shape rules decide what is
    /// valid; a rule's typed error is turned into a diagnostic by [`Self::shape_error`].
    pub(super) fn expand_block(
        &mut self,
        block: &BlockDecl,
        op: &BlockOp,
        ins: &[NodeId],
        temb: Option<NodeId>,
    ) -> Result<NodeId, Diagnostic> {
        let name = block.name.as_str();
        // Only labels index a table: a timestep or a feature value would be a float.
        if matches!(op, BlockOp::Embedding { .. }) && self.value[vertex_y().index()] != Some(ins[0]) {
            let r = &block.inputs[0];
            return Err(Diagnostic::error(
                format!("an embedding looks up the class label `y`, not `{}`", r.value),
                r.span.clone(),
            )
            .block(name.to_string())
            .field("in")
            .expected("`in = \"y\"` (the class label of a model with [condition])")
            .found(format!("`{}` of shape {}", r.value, self.shape_of(ins[0])))
            .help("to condition on the timestep, resblocks read `time`; labels need `[condition]` and `in = \"y\"`"));
        }
        let classes = self.file.condition.as_ref().map_or(0, |c| c.classes.value);
        let result = expand_op(&mut self.builder, name, op, ins, temb, classes);
        if let (BlockOp::Conv { kernel, stride, padding, .. }, Ok(id)) = (op, &result) {
            self.note_resizing_conv(name, ins[0], *id, kernel.value, stride.value, padding.value);
        }
        result.map_err(|e| self.shape_error(block, op, ins, temb, e))
    }

    /// Refuses sizes whose parameter, activation or FLOP counts would not fit the counters.
    pub(super) fn within_limits(&self, first_new: usize) -> Result<(), String> {
        for id in first_new..self.builder.len() {
            let node = self.builder.node(id);
            let numel = checked_numel(&node.shape).filter(|&n| n <= 1 << 31);
            let params: Option<u128> = node
                .op
                .params()
                .iter()
                .map(|p| p.shape.iter().try_fold(1u128, |a, &d| a.checked_mul(d as u128)))
                .sum();
            let (Some(_), Some(params)) = (numel, params) else {
                return Err(format!("the output {} is too large", node.shape));
            };
            let ins: Vec<&Shape> = node.inputs.iter().map(|&i| self.builder.shape(i)).collect();
            if params > 1 << 34 || node.op.flops(&ins, &node.shape) > 1 << 50 {
                return Err(format!("the block is too large to count (output {})", node.shape));
            }
        }
        Ok(())
    }
}

fn checked_numel(s: &Shape) -> Option<usize> {
    s.0.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
}

/// The primitive nodes of one block `name` reading `ins` (and `temb`, for a resblock); `classes`
/// sizes an embedding's table (plus one row for the null label).
pub(super) fn expand_op(
    b: &mut PrimitiveGraphBuilder,
    name: &str,
    op: &BlockOp,
    ins: &[NodeId],
    temb: Option<NodeId>,
    classes: usize,
) -> Result<NodeId, NodeError> {
    match op {
        BlockOp::Conv { channels, kernel, stride, padding } => {
            blocks::conv(b, name, name, ins[0], channels.value, kernel.value, stride.value, padding.value)
        }
        BlockOp::ConvTranspose { channels, kernel, stride, padding } => {
            // An input that is not an image is refused by the op's own rule.
            let in_channels = b.shape(ins[0]).channels().unwrap_or(0);
            let (out_channels, kernel, stride, padding) =
                (channels.value, kernel.value, stride.value, padding.value);
            let op = ConvTranspose2d { in_channels, out_channels, kernel, stride, padding };
            b.add(name, name, op, &[ins[0]])
        }
        BlockOp::GroupNorm { groups } => blocks::group_norm(b, name, name, ins[0], groups.value),
        BlockOp::Silu => b.add(name, name, Silu, &[ins[0]]),
        BlockOp::Linear { features } => {
            // An input that is not a vector is refused by the linear's own rule.
            let in_features = b.shape(ins[0]).as_vector().unwrap_or(0);
            b.add(name, name, Linear { in_features, out_features: features.value }, &[ins[0]])
        }
        BlockOp::Resblock { channels, groups, film } => {
            let temb = temb.expect("resblocks always read a time embedding");
            blocks::resblock(b, name, ins[0], temb, channels.value, groups.value, film.value == 1)
        }
        BlockOp::Downsample => blocks::downsample(b, name, ins[0]),
        BlockOp::Upsample => blocks::upsample(b, name, ins[0]),
        BlockOp::Attention { heads, groups } => blocks::attention(b, name, ins[0], heads.value, groups.value),
        BlockOp::Concat => b.add(name, name, Concat, ins),
        BlockOp::Add => b.add(name, name, Add, ins),
        BlockOp::Embedding { features } => {
            b.add(name, name, Embedding { rows: classes + 1, features: features.value }, &[ins[0]])
        }
    }
}
