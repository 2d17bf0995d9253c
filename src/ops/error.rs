//! Why a shape rule refused its inputs, as data: the sizes involved and which input or which
//! parameter is at fault, so the checker can point at the right field of the user's block
//! without reading message text.

use std::fmt;

use crate::base::Shape;

/// The kind of tensor an input must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rank {
    /// [] per image (the timestep).
    Scalar,
    /// [] per image, an integer class (the label `y` of a conditional model).
    Label,
    /// [D] per image (an embedding).
    Vector,
    /// [C, H, W] per image (a feature map).
    Image,
}

impl Rank {
    /// The kind in a sentence: "an image".
    pub fn noun(self) -> &'static str {
        match self {
            Rank::Scalar => "a timestep",
            Rank::Label => "a class label",
            Rank::Vector => "a vector",
            Rank::Image => "an image",
        }
    }

    /// How a message names it: "an image [N, C, H, W]".
    pub fn described(self) -> &'static str {
        match self {
            Rank::Scalar => "a timestep [N]",
            Rank::Label => "a class label [N]",
            Rank::Vector => "a vector [N, D]",
            Rank::Image => "an image [N, C, H, W]",
        }
    }
}

/// An op parameter a shape error can be about. Written as the model file's field names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Param {
    Groups,
    Heads,
    Kernel,
    Stride,
    Padding,
    /// The timestep embedding's dimension.
    Dim,
    Scale,
}

impl Param {
    /// The field's name in a model file.
    pub fn field(self) -> &'static str {
        match self {
            Param::Groups => "groups",
            Param::Heads => "heads",
            Param::Kernel => "kernel",
            Param::Stride => "stride",
            Param::Padding => "padding",
            Param::Dim => "dim",
            Param::Scale => "scale",
        }
    }
}

/// A shape rule that failed. `input` indices count the node's inputs from 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShapeError {
    /// The op takes `expected` inputs (at least `expected` for concat).
    Arity { expected: usize, found: usize },
    /// An input is not the kind of tensor the op reads.
    WrongRank { input: usize, expected: Rank, found: Shape },
    /// An input's channels (or a vector's length) differ from what the op was built for.
    ChannelMismatch { input: usize, expected: usize, found: usize },
    /// `param` = `value` must divide `channels` (GroupNorm groups, attention heads).
    NotDivisible { param: Param, value: usize, channels: usize },
    /// `param` = `value` is outside what the op accepts (`expected` says what it accepts).
    OutOfRange { param: Param, value: usize, expected: &'static str },
    /// Two inputs that must have equal height and width do not.
    SpatialMismatch { inputs: (usize, usize), found: (Shape, Shape) },
    /// Two inputs that must have equal shapes do not.
    ShapeMismatch { inputs: (usize, usize), found: (Shape, Shape) },
    /// The kernel does not fit the padded input: the output would be empty.
    EmptyOutput { kernel: usize, padding: usize, height: usize, width: usize },
}

impl ShapeError {
    /// The input a rank or channel error is about.
    pub fn input(&self) -> Option<usize> {
        match self {
            ShapeError::WrongRank { input, .. } | ShapeError::ChannelMismatch { input, .. } => Some(*input),
            ShapeError::Arity { .. }
            | ShapeError::NotDivisible { .. }
            | ShapeError::OutOfRange { .. }
            | ShapeError::SpatialMismatch { .. }
            | ShapeError::ShapeMismatch { .. }
            | ShapeError::EmptyOutput { .. } => None,
        }
    }
}

impl fmt::Display for ShapeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShapeError::Arity { expected, found } => write!(f, "takes {expected} input(s), found {found}"),
            ShapeError::WrongRank { input, expected, found } => {
                write!(f, "input {input}: expected {}, found {found}", expected.described())
            }
            ShapeError::ChannelMismatch { input, expected, found } => {
                write!(f, "input {input}: expected {expected} channels, found {found}")
            }
            ShapeError::NotDivisible { param: Param::Heads, value, channels } => {
                write!(f, "{value} heads do not divide {channels} channels")
            }
            ShapeError::NotDivisible { param, value, channels } => {
                write!(f, "{channels} channels are not divisible into {value} {}", param.field())
            }
            ShapeError::OutOfRange { param, value, expected } => {
                write!(f, "{} = {value}: expected {expected}", param.field())
            }
            ShapeError::SpatialMismatch { found: (a, b), .. } => {
                write!(f, "inputs differ in spatial size: {a} vs {b}")
            }
            ShapeError::ShapeMismatch { found: (a, b), .. } => {
                write!(f, "inputs differ in shape: {a} vs {b}")
            }
            ShapeError::EmptyOutput { kernel, padding, height, width } => {
                write!(f, "kernel {kernel} does not fit a {height}x{width} input with padding {padding}")
            }
        }
    }
}

impl std::error::Error for ShapeError {}
