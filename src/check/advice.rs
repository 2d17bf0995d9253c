//! Why spatial sizes do not line up, and what to change: the input size that cannot be
//! halved, unpaired downsamples and upsamples, a skip from the wrong level, a conv that resizes.

use petgraph::Direction;

use super::expand::expand_op;
use super::explain::origin_label;
use super::{vertex_of_block, Build, Vertex};
use crate::dsl::{BlockDecl, BlockOp, Diagnostic};
use crate::graph::{NodeId, PrimitiveGraphBuilder};
use crate::ops::{Input, Timestep, TimestepEmbedding};

impl<'f> Build<'f> {
    /// Remembers a stride-1 conv that changes the spatial size: the likely reason when sizes
    /// do not line up later.
    pub(super) fn note_resizing_conv(
        &mut self,
        name: &str,
        x: NodeId,
        y: NodeId,
        k: usize,
        s: usize,
        p: usize,
    ) {
        let (Some((_, h, w)), Some((_, oh, ow))) = (self.shape_of(x).as_image(), self.shape_of(y).as_image())
        else {
            return;
        };
        if s == 1 && (h, w) != (oh, ow) {
            self.resizing_convs
                .push(format!("`{name}` turns {h}x{w} into {oh}x{ow} (kernel {k}, padding {p})"));
        }
    }

    /// Why spatial sizes do not line up, the most concrete cause first: a stride-1 conv that
    /// resizes; downsamples and upsamples that do not pair up; a skip taken from another level
    /// (`pair`: the main input of a concat or add, then the other one); else odd sizes that a
    /// downsample rounds up.
    pub(super) fn size_help(&self, at: Option<&BlockDecl>, pair: Option<[(&str, NodeId); 2]>) -> String {
        if let Some(conv) = self.resizing_convs.first() {
            return format!("{conv}; a stride-1 conv keeps the size when padding = (kernel - 1) / 2");
        }
        let hw = |id: NodeId| match self.shape_of(id).as_image() {
            Some((_, h, w)) => format!("{h}x{w}"),
            None => self.shape_of(id).to_string(),
        };
        let sizes = pair
            .map(|[(main, m), (other, o)]| format!("`{other}` is at {} and `{main}` at {}", hw(o), hw(m)));
        // Each halving and each doubling counts, whichever block does it (a stride-2 conv, a
        // transposed conv, a stride-4 conv twice).
        let downs: usize = self.halvings.iter().map(|&h| h.max(0) as usize).sum();
        let ups: usize = self.halvings.iter().map(|&h| (-h).max(0) as usize).sum();
        if downs != ups {
            let fix = if downs < ups {
                "a downsample is missing on the way down (or an upsample is extra)"
            } else {
                "an upsample is missing on the way up (or a downsample is extra)"
            };
            let lead = sizes.map(|s| format!("{s}: ")).unwrap_or_default();
            return format!(
                "{lead}the model has {downs} downsample{} and {ups} upsample{}, so the decoder's levels do not \
                 meet the encoder's; {fix}",
                plural(downs),
                plural(ups)
            );
        }
        if let (Some(at), Some([(_, main), (_, other)]), Some(sizes)) = (at, pair, &sizes) {
            if let Some(skip) = self.skip_at_size_of(at, main, other) {
                return format!("{sizes}: did you mean the skip from `{skip}`, which is {}?", hw(main));
            }
        }
        "a downsample rounds an odd size up (7 -> 4) and the upsample doubles it (4 -> 8), \
         so the sizes no longer line up; check the input size and the number of downsamples"
            .to_string()
    }

    /// A block computed before `at` whose output has `main`'s height and width, to replace the
    /// input `other`: preferably of `other`'s kind (a resblock for a resblock's skip), then the
    /// closest channel count, then the first in the file.
    pub(super) fn skip_at_size_of(&self, at: &BlockDecl, main: NodeId, other: NodeId) -> Option<&'f str> {
        let (_, h, w) = self.shape_of(main).as_image()?;
        let (oc, _, _) = self.shape_of(other).as_image()?;
        let other_kind = (0..self.file.blocks.len())
            .find(|&i| self.value[vertex_of_block(i).index()] == Some(other))
            .and_then(|i| self.file.blocks[i].kind.as_ref().map(|k| k.value));
        self.file
            .blocks
            .iter()
            .enumerate()
            .filter(|(_, b)| b.name != at.name)
            .filter_map(|(i, b)| {
                // blocks after `at` in the graph have no value yet
                let id = self.value[vertex_of_block(i).index()]?;
                let (c, bh, bw) = self.shape_of(id).as_image()?;
                (id != main && id != other && (bh, bw) == (h, w)).then_some((b, c))
            })
            .min_by_key(|(b, c)| (b.kind.as_ref().map(|k| k.value) != other_kind, c.abs_diff(oc)))
            .map(|(b, _)| b.name.as_str())
    }

    /// When sizes failed to line up, says whether the input size is the reason: each
    /// downsample rounds odd sizes up, so H and W must be multiples of 2^(downsamples on a path).
    /// Then the input size is the one error, at the line to edit, and the mismatches it caused
    /// downstream become a note on it instead of errors of their own.
    pub(super) fn check_input_size(&mut self) {
        if self.spatial_mismatches.is_empty() {
            return;
        }
        let Some(input) = &self.file.input else { return };
        let depth = self.downsample_depth();
        let factor = 1usize << depth.min(30);
        let square = input.height.value == input.width.value;
        let mut consequences = false;
        for (field, v) in [("height", &input.height), ("width", &input.width)] {
            let n = v.value;
            if n.is_multiple_of(factor) || (square && field == "width") {
                continue;
            }
            // A square input gets one message, about both sides.
            let what = if square { format!("size of {n}x{n}") } else { format!("{field} of {n}") };
            let mut path = vec![n.to_string()];
            let mut s = n;
            for _ in 0..depth {
                s = s.div_ceil(2);
                path.push(s.to_string());
            }
            let lower = n / factor * factor;
            let sizes =
                if lower > 0 { format!("{lower} or {}", lower + factor) } else { format!("{factor}") };
            let times = match depth {
                1 => "once".to_string(),
                2 => "twice".to_string(),
                d => format!("{d} times"),
            };
            let plural = if depth == 1 { "" } else { "s" };
            let d = Diagnostic::error(
                format!("an input {what} cannot be halved {times} evenly ({})", path.join(" -> ")),
                v.span.clone(),
            )
            .block("[input]")
            .field(field)
            .expected(format!("a multiple of {factor} for {depth} downsample{plural}"))
            .found(n.to_string())
            .help(format!("use {sizes} (or remove a downsample)"));
            self.diags.push(origin_label(d, v));
            consequences = true;
        }
        if consequences {
            self.fold_spatial_mismatches_into_input_error();
        }
    }

    /// Drops the spatial-mismatch errors (each block reports at most one error, so the block
    /// names them exactly) and says on the last input-size error what each of them found.
    pub(super) fn fold_spatial_mismatches_into_input_error(&mut self) {
        let caused = std::mem::take(&mut self.spatial_mismatches);
        let is_caused = |d: &Diagnostic| {
            d.is_error()
                && d.block.as_deref().is_some_and(|b| b != "[input]" && caused.iter().any(|c| c == b))
        };
        let notes: Vec<String> = self
            .diags
            .iter()
            .filter(|d| is_caused(d))
            .map(|d| {
                let block = d.block.as_deref().unwrap_or_default();
                let found = d.found.as_deref().unwrap_or_default();
                format!("so the sizes at `{block}` no longer line up: {found}")
            })
            .collect();
        self.diags.retain(|d| !is_caused(d));
        if let Some(d) = self.diags.iter_mut().rev().find(|d| d.block.as_deref() == Some("[input]")) {
            d.notes.extend(notes);
        }
    }

    /// The most halvings on any path from `x`, each block counting its own (see [`halvings`]).
    pub(super) fn downsample_depth(&self) -> usize {
        let mut depth = vec![0usize; self.g.node_count()];
        for v in self.topological_order() {
            let own = match self.g[v] {
                Vertex::Block(i) => self.halvings[i].max(0) as usize,
                _ => 0,
            };
            let inputs = self
                .g
                .neighbors_directed(v, Direction::Incoming)
                .map(|u| depth[u.index()])
                .max()
                .unwrap_or(0);
            depth[v.index()] = inputs + own;
        }
        depth.into_iter().max().unwrap_or(0)
    }
}

/// How many times a block halves an image's height and width (negative: doubles them), read
/// off its expansion's input and output shapes: 1 for a `downsample` or a stride-2 `conv`, -1
/// for an `upsample` or a stride-2 `conv_transpose`, 2 for a stride-4 conv, 0 for a block that
/// keeps the size or takes no image. The block is expanded alone on a probe image, because the
/// model's own sizes are the odd ones the advice is about (9 -> 5 is not a clean half), and the
/// blocks after a mismatch have no sizes at all.
pub(super) fn halvings(op: &BlockOp) -> i32 {
    const SIZE: usize = 256;
    let mut b = PrimitiveGraphBuilder::new();
    let probe = Input { channels: 8, height: SIZE, width: SIZE };
    let expanded = b.add("x", "x", probe, &[]).and_then(|x| {
        // A resblock reads a time embedding too; its width does not matter.
        let t = b.add("t", "t", Timestep, &[])?;
        let temb = b.add("temb", "temb", TimestepEmbedding { dim: 8 }, &[t])?;
        expand_op(&mut b, "probe", op, &[x, x], Some(temb), 0)
    });
    // A block the probe does not fit (an attention whose groups do not divide 8, a linear) does
    // not resize: it keeps the channels' or takes no image.
    let Some((_, height, _)) = expanded.ok().and_then(|id| b.shape(id).as_image()) else { return 0 };
    let ratio = SIZE as f64 / height.max(1) as f64;
    ratio.log2().round() as i32
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}
