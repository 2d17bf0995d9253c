//! Composite blocks written as expansions into primitive ops.
//!
//! The model-file builder calls these for `resblock`, `downsample`, `upsample`, `attention` and
//! the time MLP; tests call them to assemble small graphs. Every node an expansion adds carries
//! the user's block name, and its parameters are named as the equivalent PyTorch module would
//! name them (`down1.conv1.weight`, `down1.time_proj.bias`, ...).

use crate::graph::{Graph, NodeError, NodeId, PrimitiveGraphBuilder};
use crate::ops::{
    Add, AddChannelBias, Attention, Concat, Conv2d, GroupNorm, Input, Linear, ScaleChannels, Silu, Timestep,
    TimestepEmbedding, UpsampleNearest,
};

/// PyTorch's GroupNorm default.
pub const GROUP_NORM_EPS: f32 = 1e-5;

fn channels_of(b: &PrimitiveGraphBuilder, x: NodeId) -> usize {
    b.shape(x).channels().unwrap_or(0)
}

/// Sinusoidal embedding of `t` (dim) -> Linear(dim, hidden) -> SiLU -> Linear(hidden, hidden).
/// Nodes: `time.embed`, `time.linear1`, `time.silu`, `time.linear2`.
pub fn time_mlp(
    b: &mut PrimitiveGraphBuilder,
    block: &str,
    t: NodeId,
    dim: usize,
    hidden: usize,
) -> Result<NodeId, NodeError> {
    let e = b.add(format!("{block}.embed"), block, TimestepEmbedding { dim }, &[t])?;
    let h =
        b.add(format!("{block}.linear1"), block, Linear { in_features: dim, out_features: hidden }, &[e])?;
    let h = b.add(format!("{block}.silu"), block, Silu, &[h])?;
    b.add(format!("{block}.linear2"), block, Linear { in_features: hidden, out_features: hidden }, &[h])
}

/// A convolution node named `name` (its params `name.weight`, `name.bias`), input channels taken
/// from `x`. (The arguments are the conv's own fields; a struct would only rename them.)
#[allow(clippy::too_many_arguments)]
pub fn conv(
    b: &mut PrimitiveGraphBuilder,
    name: &str,
    block: &str,
    x: NodeId,
    out_channels: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
) -> Result<NodeId, NodeError> {
    let in_channels = channels_of(b, x);
    b.add(name, block, Conv2d { in_channels, out_channels, kernel, stride, padding }, &[x])
}

pub fn group_norm(
    b: &mut PrimitiveGraphBuilder,
    name: &str,
    block: &str,
    x: NodeId,
    groups: usize,
) -> Result<NodeId, NodeError> {
    let channels = channels_of(b, x);
    b.add(name, block, GroupNorm { groups, channels, eps: GROUP_NORM_EPS }, &[x])
}

/// The classic DDPM ResBlock:
/// h = SiLU(GN(conv1(x))); h = h + SiLU(time_proj(temb)); h = SiLU(GN(conv2(h))); out = h + skip(x),
/// skip a 1x1 conv when the channel count changes, else the identity. With `film` the time
/// embedding also scales the first normalised features, SiLU(GN(conv1(x)) * (1 + time_scale(temb)))
/// (FiLM, Perez et al. 2018), so a class label added to it can reshape them, not only shift them.
pub fn resblock(
    b: &mut PrimitiveGraphBuilder,
    name: &str,
    x: NodeId,
    temb: NodeId,
    out_channels: usize,
    groups: usize,
    film: bool,
) -> Result<NodeId, NodeError> {
    let n = |s: &str| format!("{name}.{s}");
    let in_channels = channels_of(b, x);
    let h = conv(b, &n("conv1"), name, x, out_channels, 3, 1, 1)?;
    let h = group_norm(b, &n("norm1"), name, h, groups)?;
    let tdim = b.shape(temb).as_vector().unwrap_or(0);
    let h = if film {
        let linear = Linear { in_features: tdim, out_features: out_channels };
        let scale = b.add(n("time_scale"), name, linear, &[temb])?;
        b.add(n("scale_time"), name, ScaleChannels, &[h, scale])?
    } else {
        h
    };
    let h = b.add(n("silu1"), name, Silu, &[h])?;
    let tp =
        b.add(n("time_proj"), name, Linear { in_features: tdim, out_features: out_channels }, &[temb])?;
    let tp = b.add(n("time_silu"), name, Silu, &[tp])?;
    let h = b.add(n("add_time"), name, AddChannelBias, &[h, tp])?;
    let h = conv(b, &n("conv2"), name, h, out_channels, 3, 1, 1)?;
    let h = group_norm(b, &n("norm2"), name, h, groups)?;
    let h = b.add(n("silu2"), name, Silu, &[h])?;
    let skip =
        if in_channels != out_channels { conv(b, &n("skip"), name, x, out_channels, 1, 1, 0)? } else { x };
    b.add(n("add_skip"), name, Add, &[h, skip])
}

/// Stride-2 3x3 convolution keeping the channel count: `name.conv`.
pub fn downsample(b: &mut PrimitiveGraphBuilder, name: &str, x: NodeId) -> Result<NodeId, NodeError> {
    let c = channels_of(b, x);
    conv(b, &format!("{name}.conv"), name, x, c, 3, 2, 1)
}

/// Nearest 2x upsampling then a 3x3 convolution keeping the channel count: `name.conv`.
pub fn upsample(b: &mut PrimitiveGraphBuilder, name: &str, x: NodeId) -> Result<NodeId, NodeError> {
    let c = channels_of(b, x);
    let u = b.add(format!("{name}.upsample"), name, UpsampleNearest { scale: 2 }, &[x])?;
    conv(b, &format!("{name}.conv"), name, u, c, 3, 1, 1)
}

/// Residual self-attention over H*W: out = x + proj(attention(qkv(GN(x)))), qkv and proj 1x1 convs.
pub fn attention(
    b: &mut PrimitiveGraphBuilder,
    name: &str,
    x: NodeId,
    heads: usize,
    groups: usize,
) -> Result<NodeId, NodeError> {
    let n = |s: &str| format!("{name}.{s}");
    let c = channels_of(b, x);
    let h = group_norm(b, &n("norm"), name, x, groups)?;
    let qkv = conv(b, &n("qkv"), name, h, 3 * c, 1, 1, 0)?;
    let a = b.add(n("attn"), name, Attention { channels: c, heads }, &[qkv])?;
    let p = conv(b, &n("proj"), name, a, c, 1, 1, 0)?;
    b.add(n("add"), name, Add, &[x, p])
}

/// The shipped mini U-Net, assembled directly (no model file): init conv, three encoder levels
/// (resblock, downsample between), two mid resblocks, decoder concat + resblock + upsample, then
/// GroupNorm, SiLU and the output conv. `channels` = [c0, c1, c2, c3] as in `models/unet.toml`.
/// Tests use it to get a real model without going through the DSL.
pub fn mini_unet(
    in_channels: usize,
    size: usize,
    channels: [usize; 4],
    groups: usize,
    time_dim: usize,
    time_hidden: usize,
) -> Result<Graph, NodeError> {
    let [c0, c1, c2, c3] = channels;
    let mut b = PrimitiveGraphBuilder::new();
    let x = b.add("x", "x", Input { channels: in_channels, height: size, width: size }, &[])?;
    let t = b.add("t", "t", Timestep, &[])?;
    let temb = time_mlp(&mut b, "time", t, time_dim, time_hidden)?;
    let h0 = conv(&mut b, "init", "init", x, c0, 3, 1, 1)?;
    let e1 = resblock(&mut b, "enc1", h0, temb, c1, groups, false)?;
    let d1 = downsample(&mut b, "down1", e1)?;
    let e2 = resblock(&mut b, "enc2", d1, temb, c2, groups, false)?;
    let d2 = downsample(&mut b, "down2", e2)?;
    let e3 = resblock(&mut b, "enc3", d2, temb, c3, groups, false)?;
    let m = resblock(&mut b, "mid1", e3, temb, c3, groups, false)?;
    let m = resblock(&mut b, "mid2", m, temb, c3, groups, false)?;
    let cat3 = b.add("cat3", "cat3", Concat, &[m, e3])?;
    let u3 = resblock(&mut b, "dec3", cat3, temb, c2, groups, false)?;
    let u3 = upsample(&mut b, "up3", u3)?;
    let cat2 = b.add("cat2", "cat2", Concat, &[u3, e2])?;
    let u2 = resblock(&mut b, "dec2", cat2, temb, c1, groups, false)?;
    let u2 = upsample(&mut b, "up2", u2)?;
    let cat1 = b.add("cat1", "cat1", Concat, &[u2, e1])?;
    let u1 = resblock(&mut b, "dec1", cat1, temb, c0, groups, false)?;
    let o = group_norm(&mut b, "out_norm", "out_norm", u1, groups)?;
    let o = b.add("out_silu", "out_silu", Silu, &[o])?;
    let o = conv(&mut b, "out", "out", o, in_channels, 3, 1, 1)?;
    Ok(b.finish(o))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mini_unet_matches_pytorch_parameter_counts() {
        // Counted by building the same architecture in PyTorch (Conv2d/Linear with bias, GroupNorm affine).
        let grey = mini_unet(1, 28, [32, 64, 128, 128], 8, 32, 128).unwrap();
        assert_eq!(grey.param_count(), 2_396_321);
        let rgb = mini_unet(3, 32, [32, 64, 128, 128], 8, 32, 128).unwrap();
        assert_eq!(rgb.param_count(), 2_397_475);
        assert_eq!(rgb.output_shape(), rgb.input_shape());
    }
}
