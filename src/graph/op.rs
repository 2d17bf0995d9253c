//! The primitive ops every model is expanded into.
//!
//! This is the contract between the checker, the interpreter and the ONNX exporter: each
//! consumer matches on [`Op`]; the shape rule, the parameters and the FLOP count live here,
//! beside the op's definition, so all three agree on them.

use super::shape::Shape;

/// How a parameter tensor is initialised (PyTorch's defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// kaiming_uniform(a = sqrt(5)): U(-b, b) with b = 1 / sqrt(fan_in) (= gain * sqrt(3 / fan_in)).
    KaimingUniform { fan_in: usize },
    /// Bias of conv/linear: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    BiasUniform { fan_in: usize },
    /// Every element the same value (GroupNorm weight 1, bias 0).
    Constant(f32),
}

/// One learnable tensor of a node. Its full name is `<node name>.<name>`, e.g. `down1.conv1.weight`.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamSpec {
    pub name: &'static str,
    /// PyTorch layout: conv weight [out, in, kh, kw], linear weight [out, in].
    pub shape: Vec<usize>,
    pub init: Init,
}

impl ParamSpec {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// A primitive operation. Shapes below are per image (batch dimension N left out).
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// The noisy image `x`: [C, H, W]. Exactly one per graph.
    Input { channels: usize, height: usize, width: usize },
    /// The timesteps `t`: a scalar per image (shape []). Exactly one per graph.
    Timestep,
    /// Sinusoidal embedding of `t`: [] -> [dim].
    /// half = dim / 2, freq_i = exp(-ln(10000) * i / half) for i in 0..half,
    /// out = [sin(t * freq_0..half), cos(t * freq_0..half)]  (the diffusers convention, shift 0).
    TimestepEmbedding { dim: usize },
    /// y = x W^T + b: [in] -> [out]. Params: weight [out, in], bias [out].
    Linear { in_features: usize, out_features: usize },
    /// 2-D convolution, square kernel, zero padding: [Cin, H, W] -> [Cout, H', W'].
    /// Params: weight [Cout, Cin, k, k], bias [Cout].
    Conv2d { in_channels: usize, out_channels: usize, kernel: usize, stride: usize, padding: usize },
    /// GroupNorm over (C/groups, H, W) per group, affine. Params: weight [C], bias [C].
    GroupNorm { groups: usize, channels: usize, eps: f32 },
    /// x * sigmoid(x), any shape.
    Silu,
    /// Elementwise sum of two inputs of the same shape.
    Add,
    /// [C, H, W] + [C] broadcast over H, W (the projected time embedding).
    AddChannelBias,
    /// Concatenate along channels, two or more [Ci, H, W] inputs with equal H, W.
    Concat,
    /// Nearest-neighbour upsampling by an integer factor: [C, H, W] -> [C, sH, sW].
    UpsampleNearest { scale: usize },
    /// Multi-head self-attention over the H*W positions.
    /// Input: q, k, v stacked on channels [3C, H, W] (q = channels 0..C, k = C..2C, v = 2C..3C,
    /// head h uses channels h*C/heads..(h+1)*C/heads of each). Output [C, H, W]:
    /// softmax(q^T k / sqrt(C/heads)) applied to v, heads concatenated back on channels.
    Attention { channels: usize, heads: usize },
}

impl Op {
    /// Short lowercase name, used in tables, DOT and diagnostics.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Input { .. } => "input",
            Op::Timestep => "timestep",
            Op::TimestepEmbedding { .. } => "timestep_embedding",
            Op::Linear { .. } => "linear",
            Op::Conv2d { .. } => "conv2d",
            Op::GroupNorm { .. } => "group_norm",
            Op::Silu => "silu",
            Op::Add => "add",
            Op::AddChannelBias => "add_channel_bias",
            Op::Concat => "concat",
            Op::UpsampleNearest { .. } => "upsample_nearest",
            Op::Attention { .. } => "attention",
        }
    }

    /// The learnable tensors of this op, in a fixed order (weight before bias).
    pub fn params(&self) -> Vec<ParamSpec> {
        match *self {
            Op::Linear { in_features, out_features } => vec![
                ParamSpec {
                    name: "weight",
                    shape: vec![out_features, in_features],
                    init: Init::KaimingUniform { fan_in: in_features },
                },
                ParamSpec {
                    name: "bias",
                    shape: vec![out_features],
                    init: Init::BiasUniform { fan_in: in_features },
                },
            ],
            Op::Conv2d { in_channels, out_channels, kernel, .. } => {
                let fan_in = in_channels * kernel * kernel;
                vec![
                    ParamSpec {
                        name: "weight",
                        shape: vec![out_channels, in_channels, kernel, kernel],
                        init: Init::KaimingUniform { fan_in },
                    },
                    ParamSpec { name: "bias", shape: vec![out_channels], init: Init::BiasUniform { fan_in } },
                ]
            }
            Op::GroupNorm { channels, .. } => vec![
                ParamSpec { name: "weight", shape: vec![channels], init: Init::Constant(1.0) },
                ParamSpec { name: "bias", shape: vec![channels], init: Init::Constant(0.0) },
            ],
            _ => vec![],
        }
    }

    pub fn param_count(&self) -> usize {
        self.params().iter().map(ParamSpec::numel).sum()
    }

    /// Output shape from input shapes, or a sentence saying what is wrong (expected vs found).
    pub fn infer_shape(&self, inputs: &[&Shape]) -> Result<Shape, String> {
        let arity = |n: usize| -> Result<(), String> {
            if inputs.len() == n {
                Ok(())
            } else {
                Err(format!("{} takes {n} input(s), found {}", self.kind(), inputs.len()))
            }
        };
        match *self {
            Op::Input { channels, height, width } => {
                arity(0)?;
                Ok(Shape::image(channels, height, width))
            }
            Op::Timestep => {
                arity(0)?;
                Ok(Shape::scalar())
            }
            Op::TimestepEmbedding { dim } => {
                arity(1)?;
                if !inputs[0].is_scalar() {
                    return Err(format!("expected the timestep [N], found {}", inputs[0]));
                }
                if dim < 2 || dim % 2 != 0 {
                    return Err(format!("embedding dim must be even and >= 2, found {dim}"));
                }
                Ok(Shape::vector(dim))
            }
            Op::Linear { in_features, out_features } => {
                arity(1)?;
                match inputs[0].as_vector() {
                    Some(d) if d == in_features => Ok(Shape::vector(out_features)),
                    _ => Err(format!("expected input [N, {in_features}], found {}", inputs[0])),
                }
            }
            Op::Conv2d { in_channels, out_channels, kernel, stride, padding } => {
                arity(1)?;
                let (c, h, w) = inputs[0]
                    .as_image()
                    .ok_or_else(|| format!("expected an image [N, C, H, W], found {}", inputs[0]))?;
                if c != in_channels {
                    return Err(format!("expected {in_channels} input channels, found {c}"));
                }
                if kernel == 0 || stride == 0 {
                    return Err(format!(
                        "kernel and stride must be >= 1, found kernel {kernel}, stride {stride}"
                    ));
                }
                let out = |n: usize| (n + 2 * padding).checked_sub(kernel).map(|v| v / stride + 1);
                match (out(h), out(w)) {
                    (Some(oh), Some(ow)) if oh > 0 && ow > 0 => Ok(Shape::image(out_channels, oh, ow)),
                    _ => Err(format!(
                        "kernel {kernel}, stride {stride}, padding {padding} on {h}x{w} gives an empty output"
                    )),
                }
            }
            Op::GroupNorm { groups, channels, .. } => {
                arity(1)?;
                let c = inputs[0].channels();
                if c != Some(channels) {
                    return Err(format!("expected {channels} channels, found {}", inputs[0]));
                }
                if groups == 0 || channels % groups != 0 {
                    return Err(format!("{channels} channels are not divisible into {groups} groups"));
                }
                Ok(inputs[0].clone())
            }
            Op::Silu => {
                arity(1)?;
                Ok(inputs[0].clone())
            }
            Op::Add => {
                arity(2)?;
                if inputs[0] != inputs[1] {
                    return Err(format!("add needs equal shapes, found {} and {}", inputs[0], inputs[1]));
                }
                Ok(inputs[0].clone())
            }
            Op::AddChannelBias => {
                arity(2)?;
                let (c, _, _) = inputs[0]
                    .as_image()
                    .ok_or_else(|| format!("expected an image [N, C, H, W], found {}", inputs[0]))?;
                match inputs[1].as_vector() {
                    Some(d) if d == c => Ok(inputs[0].clone()),
                    _ => Err(format!("expected a per-channel vector [N, {c}], found {}", inputs[1])),
                }
            }
            Op::Concat => {
                if inputs.len() < 2 {
                    return Err(format!("concat takes two or more inputs, found {}", inputs.len()));
                }
                let mut total = 0;
                let mut hw: Option<(usize, usize)> = None;
                for s in inputs {
                    let (c, h, w) =
                        s.as_image().ok_or_else(|| format!("expected images [N, C, H, W], found {s}"))?;
                    if let Some(prev) = hw {
                        if prev != (h, w) {
                            return Err(format!(
                                "concat inputs differ in spatial size: {}x{} vs {h}x{w}",
                                prev.0, prev.1
                            ));
                        }
                    }
                    hw = Some((h, w));
                    total += c;
                }
                let (h, w) = hw.expect("at least two inputs");
                Ok(Shape::image(total, h, w))
            }
            Op::UpsampleNearest { scale } => {
                arity(1)?;
                let (c, h, w) = inputs[0]
                    .as_image()
                    .ok_or_else(|| format!("expected an image [N, C, H, W], found {}", inputs[0]))?;
                if scale == 0 {
                    return Err("scale must be >= 1".into());
                }
                Ok(Shape::image(c, h * scale, w * scale))
            }
            Op::Attention { channels, heads } => {
                arity(1)?;
                let (c, h, w) = inputs[0]
                    .as_image()
                    .ok_or_else(|| format!("expected an image [N, C, H, W], found {}", inputs[0]))?;
                if c != 3 * channels {
                    return Err(format!("expected q, k, v stacked as {} channels, found {c}", 3 * channels));
                }
                if heads == 0 || channels % heads != 0 {
                    return Err(format!("{heads} heads do not divide {channels} channels"));
                }
                Ok(Shape::image(channels, h, w))
            }
        }
    }

    /// Forward floating-point operations per image (a multiply-add counts as 2).
    pub fn flops(&self, inputs: &[&Shape], output: &Shape) -> u64 {
        let out = output.numel() as u64;
        match *self {
            Op::Input { .. } | Op::Timestep | Op::Concat => 0,
            Op::TimestepEmbedding { dim } => 3 * dim as u64,
            Op::Linear { in_features, .. } => 2 * in_features as u64 * out,
            Op::Conv2d { in_channels, kernel, .. } => 2 * (in_channels * kernel * kernel) as u64 * out,
            // mean, variance, normalise, affine
            Op::GroupNorm { .. } => 8 * out,
            Op::Silu => 4 * out,
            Op::Add | Op::AddChannelBias | Op::UpsampleNearest { .. } => out,
            Op::Attention { channels, heads } => {
                let positions = inputs[0].as_image().map(|(_, h, w)| (h * w) as u64).unwrap_or(0);
                // q^T k and scores @ v: 2 * 2 * P * P * C over all heads; softmax ~5 per score
                4 * positions * positions * channels as u64 + 5 * positions * positions * heads as u64
            }
        }
    }
}
