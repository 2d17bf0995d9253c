//! The model-file language: TOML parsed (by the `toml` crate, keeping the span of every key and
//! value) into a [`ModelFile`] whose every value remembers where it was written.
//!
//! ```toml
//! [model]
//! output = "out"                      # the block whose value is the predicted noise
//!
//! [vars]                              # named values; fields refer to them by name
//! channels = [32, 64, 128, 128]
//! groups = 8                          # also the default `groups` of every block that takes one
//!
//! [input]                             # the noisy image x, per image
//! channels = 1
//! height = 28
//! width = 28
//!
//! [time]                              # sinusoidal timestep embedding, then an MLP
//! dim = 32
//! hidden = 128
//!
//! [blocks]                            # one line per block: op kind, inputs, parameters
//! init = { op = "conv", in = "x", channels = "channels[0]", kernel = 3, padding = 1 }
//! enc1 = { op = "resblock", in = "init", channels = "channels[1]" }
//! ```
//!
//! Schema problems are collected, not thrown: every unknown or missing field, wrong type and
//! bad name in the file becomes a [`Diagnostic`] (serde's derive would stop at the first one).
//! A block with bad fields is still returned (with `op: None`) so references to it resolve and
//! the checker can go on without cascading errors.

pub mod diag;
mod parse;
pub mod schema;
mod syntax;

pub use schema::{BlockOp, ConditionDecl, InputDecl, OpKind, TimeDecl};

use std::ops::Range;

pub use diag::{Diagnostic, Report, Severity};
pub use parse::parse;

pub type Span = Range<usize>;

/// A value from the file with the span it was written at and, when it was a reference to a
/// named value, the reference text and the span of the definition.
#[derive(Debug, Clone, PartialEq)]
pub struct Val<T> {
    pub value: T,
    pub span: Span,
    pub origin: Option<(String, Span)>,
}

impl<T> Val<T> {
    pub(crate) fn plain(value: T, span: Span) -> Self {
        Val { value, span, origin: None }
    }
}

/// A parsed model file. Sections that failed to parse are `None` (their errors are reported).
#[derive(Debug, Clone)]
pub struct ModelFile {
    pub name: Option<String>,
    /// `[model] output`: the block producing the predicted noise.
    pub output: Option<Val<String>>,
    /// Span of the `[model]` table (or of the file start when it is missing).
    pub model_span: Span,
    pub input: Option<InputDecl>,
    pub time: Option<TimeDecl>,
    /// Whether the file has a `[time]` section at all (it may have failed to parse).
    pub time_declared: bool,
    /// `[condition]`: the model is class-conditional.
    pub condition: Option<ConditionDecl>,
    /// Whether the file has a `[condition]` section at all (it may have failed to parse).
    pub condition_declared: bool,
    /// Blocks in file order.
    pub blocks: Vec<BlockDecl>,
    /// The `[train]` section, each setting with its spans (checked against
    /// [`crate::recipe::SETTINGS`] by the parser).
    pub train: Option<TrainSection>,
}

/// The `[train]` section as written.
#[derive(Debug, Clone)]
pub struct TrainSection {
    pub span: Span,
    pub entries: Vec<TrainEntry>,
}

/// One `key = value` of `[train]`.
#[derive(Debug, Clone)]
pub struct TrainEntry {
    pub key: Val<String>,
    pub value: toml::Value,
    pub value_span: Span,
}

impl TrainSection {
    /// The section as a plain TOML table (what the training code applies).
    pub fn table(&self) -> toml::Table {
        self.entries.iter().map(|e| (e.key.value.clone(), e.value.clone())).collect()
    }
}

#[derive(Debug, Clone)]
pub struct BlockDecl {
    pub name: String,
    pub name_span: Span,
    /// The block's table (the whole `{ ... }` or section).
    pub span: Span,
    pub kind: Option<Val<OpKind>>,
    /// `in`: the blocks read, in order.
    pub inputs: Vec<Val<String>>,
    /// Span of the `in` value (or of the block when `in` is missing).
    pub inputs_span: Span,
    /// `time` of a resblock: the time-embedding block it reads (default `time`).
    pub time: Option<Val<String>>,
    /// The op with its parameters; `None` when a field was bad (already reported).
    pub op: Option<BlockOp>,
    /// Span of each field written in the block, for pointing at it later.
    pub field_spans: Vec<(String, Span)>,
}

impl BlockDecl {
    /// Span of `field` when the block writes it, else the block's name.
    pub fn field_span(&self, field: &str) -> Span {
        self.field_spans
            .iter()
            .find(|(f, _)| f == field)
            .map(|(_, s)| s.clone())
            .unwrap_or_else(|| self.name_span.clone())
    }
}

/// Names a block may not take: the graph's own inputs and the time embedding.
pub const RESERVED: [&str; 4] = ["x", "t", "y", "time"];
