//! The block ops of `[blocks]`, declared once: each op's name, number of inputs, one line of
//! docs and its fields (type, allowed range, default, one line of docs). From this one table
//! come [`OpKind`], the typed [`BlockOp`] the checker matches on, the parser of every block
//! (range checks, defaults, unknown-field errors with did-you-mean) and the op table of docs/model-file.md.
//!
//! Adding a field to an op is one line in the `blocks!` invocation below; adding an op is one
//! entry there (plus its expansion in the checker, which the compiler asks for).
//!
//! The sections of plain fields (`[input]`, `[time]`, `[condition]`) are declared the same way
//! in the `sections!` invocation: each becomes its `*Decl` struct, its [`SectionSpec`] and its
//! reader.

use super::{Span, Val};
use crate::base::limits::{MAX_CHANNELS, MAX_CLASSES, MAX_KERNEL, MAX_SIZE, MAX_TIMESTEPS};

/// What a field holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FieldKind {
    /// An integer in `lo..=hi`: a literal or a reference to `[vars]` / `input.*`.
    Int { lo: usize, hi: usize },
    /// A number in `lo..=hi`.
    Float { lo: f64, hi: f64 },
    /// The name of another block (a resblock's `time`).
    Block,
}

/// What a field is when the block does not write it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FieldDefault {
    Required,
    Int(usize),
    Float(f64),
    /// The value of this name in `[vars]` (`groups`).
    Var(&'static str),
    /// This block (`time`).
    Block(&'static str),
}

/// One field of a block op.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FieldSpec {
    pub name: &'static str,
    pub kind: FieldKind,
    pub default: FieldDefault,
    pub doc: &'static str,
}

/// One block op.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OpSpec {
    pub kind: OpKind,
    pub name: &'static str,
    /// How many blocks `in` names: (min, max).
    pub arity: (usize, usize),
    pub doc: &'static str,
    pub fields: &'static [FieldSpec],
}

/// The Rust type a field kind is parsed into.
macro_rules! field_type {
    (int) => {
        usize
    };
    (float) => {
        f64
    };
}

/// The [`FieldKind`] of a field's declaration.
macro_rules! field_kind {
    (int, $lo:expr, $hi:expr) => {
        FieldKind::Int { lo: $lo, hi: $hi }
    };
    (float, $lo:expr, $hi:expr) => {
        FieldKind::Float { lo: $lo, hi: $hi }
    };
}

/// Builds the `BlockOp` enum one variant at a time, so ops without parameters are unit variants
/// (matched as `BlockOp::Silu`).
macro_rules! block_op_enum {
    (@acc [$($acc:tt)*]) => {
        /// A block's op with its parameters resolved to numbers.
        #[derive(Debug, Clone, PartialEq)]
        pub enum BlockOp { $($acc)* }
    };
    (@acc [$($acc:tt)*] $variant:ident {} $($rest:tt)*) => {
        block_op_enum!(@acc [$($acc)* $variant,] $($rest)*);
    };
    (@acc [$($acc:tt)*] $variant:ident { $($field:ident : $kind:ident),+ } $($rest:tt)*) => {
        block_op_enum!(@acc [$($acc)* $variant { $($field: Val<field_type!($kind)>),+ },] $($rest)*);
    };
}

macro_rules! blocks {
    ($(
        $variant:ident $name:literal, inputs ($lo:expr, $hi:expr), $doc:literal {
            $( $field:ident : $kind:ident ($flo:expr, $fhi:expr) = $default:ident $(($arg:expr))?, $fdoc:literal; )*
        } $( @time = $time:literal, $tdoc:literal; )?
    )*) => {
        /// The op kinds a block can have, as written in `op = "..."`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum OpKind { $($variant),* }

        block_op_enum!(@acc [] $($variant { $($field: $kind),* })*);

        /// Every block op, in the order docs/model-file.md lists them.
        pub const OPS: &[OpSpec] = &[$(
            OpSpec {
                kind: OpKind::$variant,
                name: $name,
                arity: ($lo, $hi),
                doc: $doc,
                fields: &[
                    $(FieldSpec {
                        name: stringify!($field),
                        kind: field_kind!($kind, $flo, $fhi),
                        default: FieldDefault::$default $(($arg))?,
                        doc: $fdoc,
                    },)*
                    $(FieldSpec { name: "time", kind: FieldKind::Block, default: FieldDefault::Block($time), doc: $tdoc },)?
                ],
            },
        )*];

        impl BlockOp {
            /// Reads every field of a `kind` block through `read` (None when one was bad).
            pub(crate) fn read(kind: OpKind, read: &mut dyn FieldReader) -> Option<BlockOp> {
                match kind {
                    $(OpKind::$variant => {
                        let spec = kind.spec();
                        let mut _fields = spec.fields.iter();
                        // Read every field first, so each bad one is reported.
                        $(let $field = <field_type!($kind) as FieldValue>::read(read, _fields.next().expect("declared"));)*
                        Some(BlockOp::$variant { $($field: $field?),* })
                    })*
                }
            }
        }
    };
}

/// Reads one field of the block being parsed (implemented by the parser).
pub(crate) trait FieldReader {
    fn int(&mut self, spec: &FieldSpec) -> Option<Val<usize>>;
    fn float(&mut self, spec: &FieldSpec) -> Option<Val<f64>>;
}

/// A Rust type a block field can have.
pub(crate) trait FieldValue: Sized {
    fn read(r: &mut dyn FieldReader, spec: &FieldSpec) -> Option<Val<Self>>;
    /// The value when it is an integer (what a reference like `"input.channels"` can read).
    fn as_int(v: &Val<Self>) -> Option<&Val<usize>>;
}

impl FieldValue for usize {
    fn read(r: &mut dyn FieldReader, spec: &FieldSpec) -> Option<Val<Self>> {
        r.int(spec)
    }
    fn as_int(v: &Val<Self>) -> Option<&Val<usize>> {
        Some(v)
    }
}

impl FieldValue for f64 {
    fn read(r: &mut dyn FieldReader, spec: &FieldSpec) -> Option<Val<Self>> {
        r.float(spec)
    }
    fn as_int(_: &Val<Self>) -> Option<&Val<usize>> {
        None
    }
}

blocks! {
    Conv "conv", inputs (1, 1), "2-D convolution with bias" {
        channels: int(1, MAX_CHANNELS) = Required, "output channels";
        kernel: int(1, MAX_KERNEL) = Required, "kernel size (square)";
        stride: int(1, MAX_KERNEL) = Int(1), "step between kernel positions";
        padding: int(0, MAX_KERNEL) = Int(0), "zeros added on each side; `(kernel - 1) / 2` keeps the size";
    }
    ConvTranspose "conv_transpose", inputs (1, 1),
        "2-D transposed convolution with bias (PyTorch's ConvTranspose2d): size (H - 1) * stride - 2 * padding + kernel" {
        channels: int(1, MAX_CHANNELS) = Required, "output channels";
        kernel: int(1, MAX_KERNEL) = Required, "kernel size (square)";
        stride: int(1, MAX_KERNEL) = Int(1), "upsampling factor; kernel 4, stride 2, padding 1 doubles the size";
        padding: int(0, MAX_KERNEL) = Int(0), "rows and columns cropped from each side of the output";
    }
    GroupNorm "group_norm", inputs (1, 1), "GroupNorm, affine" {
        groups: int(1, MAX_CHANNELS) = Var("groups"), "groups the channels are normalised in";
    }
    Silu "silu", inputs (1, 1), "x * sigmoid(x)" {}
    Linear "linear", inputs (1, 1), "Linear with bias on a vector (e.g. on `time`)" {
        features: int(1, MAX_CHANNELS) = Required, "output features";
    }
    Resblock "resblock", inputs (1, 1),
        "conv-norm-SiLU, + SiLU(Linear(t)), conv-norm-SiLU, + skip (1x1 conv when channels change)" {
        channels: int(1, MAX_CHANNELS) = Required, "output channels";
        groups: int(1, MAX_CHANNELS) = Var("groups"), "GroupNorm groups";
        film: int(0, 1) = Int(0), "1: `time` also scales the first normalised features, h (1 + Linear(t)) (FiLM), so a class label can reshape them";
    } @time = "time", "the time-embedding block it reads";
    Downsample "downsample", inputs (1, 1), "3x3 conv, stride 2, same channels" {}
    Upsample "upsample", inputs (1, 1), "nearest 2x, then 3x3 conv, same channels" {}
    Concat "concat", inputs (2, usize::MAX), "concatenation along channels" {}
    Add "add", inputs (2, 2), "elementwise sum" {}
    Embedding "embedding", inputs (1, 1),
        "a learnt vector per class, read from the label `y`: a table of `classes` + 1 rows (the last for \
         no label, see [condition]); add it to `time` and give the sum to the resblocks' `time`" {
        features: int(1, MAX_CHANNELS) = Required, "vector width; \"time.hidden\" to add it to the time embedding";
    }
    Attention "attention", inputs (1, 1),
        "GroupNorm, 1x1 qkv, multi-head self-attention over H*W, 1x1 proj, + x" {
        heads: int(1, MAX_CHANNELS) = Required, "attention heads (must divide the channels)";
        groups: int(1, MAX_CHANNELS) = Var("groups"), "GroupNorm groups";
    }
}

/// A section of plain fields (`[input]`, `[time]`, `[condition]`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SectionSpec {
    /// As written in the file, without brackets.
    pub name: &'static str,
    pub fields: &'static [FieldSpec],
}

impl SectionSpec {
    pub fn field_names(&self) -> impl Iterator<Item = &'static str> {
        self.fields.iter().map(|f| f.name)
    }

    pub fn has_field(&self, name: &str) -> bool {
        self.fields.iter().any(|f| f.name == name)
    }
}

/// Declares each section of plain fields once: its `*Decl` struct (every field a [`Val`] that
/// remembers where it was written), its [`SectionSpec`] and its reader.
macro_rules! sections {
    ($(
        $(#[doc = $sdoc:literal])*
        $decl:ident $name:literal {
            $( $field:ident : $kind:ident ($flo:expr, $fhi:expr) = $default:ident $(($arg:expr))?, $fdoc:literal; )*
        }
    )*) => {
        $(
            $(#[doc = $sdoc])*
            #[derive(Debug, Clone)]
            pub struct $decl {
                /// The section's table.
                pub span: Span,
                $(#[doc = $fdoc] pub $field: Val<field_type!($kind)>,)*
            }

            impl $decl {
                pub const SPEC: SectionSpec = SectionSpec {
                    name: $name,
                    fields: &[$(FieldSpec {
                        name: stringify!($field),
                        kind: field_kind!($kind, $flo, $fhi),
                        default: FieldDefault::$default $(($arg))?,
                        doc: $fdoc,
                    },)*],
                };

                /// Reads every field through `read` (None when one was bad; each is reported).
                pub(crate) fn read(span: Span, read: &mut dyn FieldReader) -> Option<$decl> {
                    let mut fields = Self::SPEC.fields.iter();
                    $(let $field = <field_type!($kind) as FieldValue>::read(read, fields.next().expect("declared"));)*
                    Some($decl { span, $($field: $field?),* })
                }

                /// The integer field `name`, for references like `"input.channels"`.
                pub fn int(&self, name: &str) -> Option<&Val<usize>> {
                    match name {
                        $(stringify!($field) => <field_type!($kind) as FieldValue>::as_int(&self.$field),)*
                        _ => None,
                    }
                }
            }
        )*

        /// Every section of plain fields.
        pub const SECTIONS: &[SectionSpec] = &[$($decl::SPEC),*];
    };
}

sections! {
    /// `[input]`: the noisy image x, per image.
    InputDecl "input" {
        channels: int(1, MAX_CHANNELS) = Required, "image channels (1: grey, 3: colour)";
        height: int(1, MAX_SIZE) = Required, "image height in pixels";
        width: int(1, MAX_SIZE) = Required, "image width in pixels";
    }
    /// `[time]`: the sinusoidal timestep embedding, then an MLP.
    TimeDecl "time" {
        dim: int(1, MAX_CHANNELS) = Required, "width of the sinusoidal embedding of t";
        hidden: int(1, MAX_CHANNELS) = Required, "width of the MLP after it (the `time` block's features)";
    }
    /// `[condition]`: the classes a conditional model knows and how often training hides the label.
    ConditionDecl "condition" {
        classes: int(1, MAX_CLASSES) = Required, "real classes (labels 0..classes-1); the null label is `classes`";
        drop: float(0.0, 0.99) = Float(0.8),
            "probability that training replaces a label by the null label (what `--guidance 0` learns from; \
             0.8 by measurement on the built-in digits, docs/experiments/conditional.md)";
        hide_below: int(0, MAX_TIMESTEPS as usize) = Int(0),
            "timesteps below this one never see the label: training and sampling give them the null label \
             (0: every timestep sees it)";
    }
}

impl OpKind {
    pub fn spec(self) -> &'static OpSpec {
        OPS.iter().find(|s| s.kind == self).expect("every op kind is in OPS")
    }

    pub fn name(self) -> &'static str {
        self.spec().name
    }

    pub fn from_name(s: &str) -> Option<OpKind> {
        OPS.iter().find(|o| o.name == s).map(|o| o.kind)
    }

    pub fn all() -> impl Iterator<Item = OpKind> {
        OPS.iter().map(|o| o.kind)
    }

    /// Fields the op takes besides `op` and `in`.
    pub fn fields(self) -> impl Iterator<Item = &'static str> {
        self.spec().fields.iter().map(|f| f.name)
    }

    pub fn field(self, name: &str) -> Option<&'static FieldSpec> {
        self.spec().fields.iter().find(|f| f.name == name)
    }

    /// How many inputs `in` must name: (min, max).
    pub fn arity(self) -> (usize, usize) {
        self.spec().arity
    }
}

impl FieldSpec {
    /// How docs/model-file.md writes the field: `` `stride` = 1 ``, `` `groups` (default `[vars] groups`) ``.
    fn markdown(&self) -> String {
        match self.default {
            FieldDefault::Required => format!("`{}`", self.name),
            FieldDefault::Int(v) => format!("`{}` = {v}", self.name),
            FieldDefault::Float(v) => format!("`{}` = {v}", self.name),
            FieldDefault::Var(var) => format!("`{}` (default `[vars] {var}`)", self.name),
            FieldDefault::Block(b) => format!("`{}` = \"{b}\"", self.name),
        }
    }
}

/// The table of block ops in docs/model-file.md, generated from [`OPS`].
pub fn ops_markdown() -> String {
    let mut out = String::from("| op | fields (besides `op`, `in`) | what it is |\n|---|---|---|\n");
    for op in OPS {
        let mut fields: Vec<String> = op.fields.iter().map(FieldSpec::markdown).collect();
        match op.arity {
            (1, 1) => {}
            (2, 2) => fields.push("(`in`: two)".into()),
            (lo, _) => fields.push(format!("(`in`: {} or more)", number_word(lo))),
        }
        let fields = if fields.is_empty() { String::new() } else { format!(" {}", fields.join(", ")) };
        out.push_str(&format!("| `{}` |{fields} | {} |\n", op.name, op.doc));
    }
    out
}

fn number_word(n: usize) -> String {
    match n {
        2 => "two".into(),
        3 => "three".into(),
        n => n.to_string(),
    }
}

/// The fields of `[model]`.
pub const MODEL_FIELDS: [&str; 2] = ["name", "output"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_op_is_declared_once_with_unique_names() {
        let mut names: Vec<&str> = OPS.iter().map(|o| o.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), OPS.len());
        for op in OPS {
            assert_eq!(OpKind::from_name(op.name), Some(op.kind));
            let mut fields: Vec<&str> = op.kind.fields().collect();
            fields.sort_unstable();
            fields.dedup();
            assert_eq!(fields.len(), op.fields.len(), "{}: a field twice", op.name);
            // The parser stores block references in `BlockDecl::time`, the only one there is.
            for f in op.fields.iter().filter(|f| f.kind == FieldKind::Block) {
                assert_eq!(f.name, "time");
            }
        }
    }

    #[test]
    fn the_readme_table_lists_defaults_and_arity() {
        let t = ops_markdown();
        assert!(t.contains("| `conv` | `channels`, `kernel`, `stride` = 1, `padding` = 0 |"), "{t}");
        assert!(t.contains("| `concat` | (`in`: two or more) |"), "{t}");
        assert!(t.contains("`groups` (default `[vars] groups`)"), "{t}");
    }
}
