//! The primitive ops every model is expanded into, one module per op.
//!
//! Each module holds everything about its op side by side: the parameters and their init, the
//! shape rule (with a typed [`ShapeError`]), the FLOP count, the interpreter's forward and
//! backward (calling the kernels in `interp::kernels`), what the backward keeps, the ONNX
//! lowering, the PyTorch code and the op's unit tests. [`PrimitiveOp`] is that contract; the
//! `registry!` list at the bottom of this file is the one place that names every op: it generates
//! the [`Op`] enum and its dispatch, so every consumer match is exhaustive and a new op that
//! misses a method does not compile.

mod conv_grad;
mod error;
mod exec;
pub mod lower_grad;

pub use error::{Param, Rank, ShapeError};
pub use exec::{Backward, Epilogue, Forward};
pub use lower_grad::{GradValues, LoweredGrads};

use crate::base::Shape;
use crate::kernels::Real;
use crate::onnx_ir::lower::Lowerer;

/// How a parameter tensor is initialised (PyTorch's defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// kaiming_uniform(a = sqrt(5)): U(-b, b) with b = 1 / sqrt(fan_in) (= gain * sqrt(3 / fan_in)).
    KaimingUniform { fan_in: usize },
    /// Bias of conv/linear: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    BiasUniform { fan_in: usize },
    /// Every element the same value (GroupNorm weight 1, bias 0).
    Constant(f32),
    /// N(0, std^2): an embedding table (PyTorch's `nn.Embedding` draws N(0, 1)).
    Normal { std: f32 },
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

/// What every primitive op provides. Shapes are per image (batch dimension N left out).
/// No method has a default: a new op states each one.
pub trait PrimitiveOp {
    /// Short lowercase name, used in tables, DOT, profiles and messages.
    fn kind(&self) -> &'static str;

    /// The learnable tensors, in a fixed order (weight before bias).
    fn params(&self) -> Vec<ParamSpec>;

    /// The output shape from the input shapes, or what is wrong with them.
    fn infer_shape(&self, inputs: &[&Shape]) -> Result<Shape, ShapeError>;

    /// Forward floating-point operations per image (a multiply-add counts 2), for shapes that
    /// passed [`Self::infer_shape`]. Wide so that the checker can refuse sizes whose count
    /// would not fit the tables' `u64` before anything overflows.
    fn flops(&self, inputs: &[&Shape], output: &Shape) -> u128;

    /// Whether [`Self::backward`] reads the inputs' forward values: the engine then keeps them
    /// alive until this node's backward has run, and frees them after their last forward
    /// reader otherwise.
    fn backward_keeps_inputs(&self) -> bool;

    /// Computes the output for a batch (the interpreter's forward).
    fn forward<T: Real>(&self, cx: Forward<'_, T>);

    /// From `dy`, the gradient of the output, writes the parameters' gradients and hands the
    /// inputs' gradients to the engine; `dy` goes back to the pool or becomes one of them.
    fn backward<T: Real>(&self, cx: Backward<'_, '_, T>, dy: Vec<T>);

    /// Emits the ONNX nodes computing the node called `name` from the values named `ins` into the
    /// value `out`. The node carrying the result is named `name` (`down1.conv`), helpers
    /// `<name>/<step>`; shapes that depend on N, H or W are read at run time.
    fn lower_onnx(&self, cx: &mut Lowerer<'_>, name: &str, ins: &[&str], out: &str);

    /// Emits the ONNX nodes computing the gradients of node `name` (the training step's
    /// backward) from the forward's values and the output's gradient `at.dy`: the wanted inputs'
    /// gradients and every parameter's, as values named `<name>/grad/<step>`.
    fn lower_backward(&self, cx: &mut Lowerer<'_>, name: &str, at: &GradValues<'_>) -> LoweredGrads;

    /// The PyTorch layer holding this node's parameters, as the Python expression that builds it
    /// (`nn.Conv2d(1, 16, 3, stride=1, padding=1)`), its tensors named and laid out as
    /// [`Self::params`] has them, so that `state_dict()` keys are mdc's; None without parameters.
    fn torch_layer(&self) -> Option<String>;

    /// The Python expression computing the node `name` from the values named `ins`, as
    /// [`Self::forward`] computes it; the node's layer is `self.<name>`.
    fn torch_forward(&self, name: &str, ins: &[&str]) -> String;

    /// A Python function the expression calls, written once into the module file (or "").
    fn torch_helper(&self) -> &'static str;
}

/// The [`PrimitiveOp`] methods the graph's inputs (`x`, `t`, `y`) share: no parameters, no
/// arithmetic, nothing kept; the forward copies the batch's data, which the engine passes as the
/// only input; nothing upstream takes a gradient (the engine reads the image gradient off `x`
/// when asked); the exporter declares each as an ONNX graph input, so nothing is emitted; in
/// PyTorch each is an argument of `forward`, held by no layer.
macro_rules! graph_input_methods {
    () => {
        fn params(&self) -> Vec<$crate::ops::ParamSpec> {
            vec![]
        }

        fn flops(&self, _: &[&$crate::base::Shape], _: &$crate::base::Shape) -> u128 {
            0
        }

        fn backward_keeps_inputs(&self) -> bool {
            false
        }

        fn forward<T: $crate::kernels::Real>(&self, cx: $crate::ops::Forward<'_, T>) {
            cx.out.copy_from_slice(cx.inputs[0]);
        }

        fn backward<T: $crate::kernels::Real>(&self, cx: $crate::ops::Backward<'_, '_, T>, dy: Vec<T>) {
            cx.pool.give(dy);
        }

        fn lower_onnx(&self, _: &mut $crate::onnx_ir::lower::Lowerer<'_>, _: &str, _: &[&str], _: &str) {}

        /// A graph input takes no gradient.
        fn lower_backward(
            &self,
            _: &mut $crate::onnx_ir::lower::Lowerer<'_>,
            _: &str,
            _: &$crate::ops::GradValues<'_>,
        ) -> $crate::ops::LoweredGrads {
            $crate::ops::LoweredGrads::default()
        }

        fn torch_layer(&self) -> Option<String> {
            None
        }

        fn torch_helper(&self) -> &'static str {
            ""
        }
    };
}

/// Requires exactly `n` inputs.
pub(crate) fn arity(inputs: &[&Shape], n: usize) -> Result<(), ShapeError> {
    if inputs.len() == n {
        Ok(())
    } else {
        Err(ShapeError::Arity { expected: n, found: inputs.len() })
    }
}

/// Input `k` as an image (C, H, W), or a rank error naming it.
pub(crate) fn image(inputs: &[&Shape], k: usize) -> Result<(usize, usize, usize), ShapeError> {
    inputs[k].as_image().ok_or_else(|| ShapeError::WrongRank {
        input: k,
        expected: Rank::Image,
        found: inputs[k].clone(),
    })
}

/// Input `k` as a vector's length, or a rank error naming it.
pub(crate) fn vector(inputs: &[&Shape], k: usize) -> Result<usize, ShapeError> {
    inputs[k].as_vector().ok_or_else(|| ShapeError::WrongRank {
        input: k,
        expected: Rank::Vector,
        found: inputs[k].clone(),
    })
}

/// An image and one value per channel of it (the time embedding's projection), as taken by the
/// per-channel bias and scale: the image's shape, or the error naming the input that does not fit.
pub(crate) fn image_and_channel_vector(inputs: &[&Shape]) -> Result<Shape, ShapeError> {
    arity(inputs, 2)?;
    let (c, _, _) = image(inputs, 0)?;
    let d = vector(inputs, 1)?;
    if d != c {
        return Err(ShapeError::ChannelMismatch { input: 1, expected: c, found: d });
    }
    Ok(inputs[0].clone())
}

/// The one list of primitive ops. Each line is `module::Type`: the macro declares the module
/// (`src/ops/module.rs`), re-exports its type, and generates the [`Op`] enum (variant `Type`),
/// `From` conversions and the exhaustive dispatch of every [`PrimitiveOp`] method.
macro_rules! registry {
    ($($module:ident::$variant:ident),* $(,)?) => {
        $(pub mod $module;
        pub use $module::$variant;)*

        /// A primitive operation: one of the op modules' types.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Op {
            $($variant($variant),)*
        }

        $(impl From<$variant> for Op {
            fn from(op: $variant) -> Op {
                Op::$variant(op)
            }
        })*

        impl Op {
            pub fn kind(&self) -> &'static str {
                match self { $(Op::$variant(op) => op.kind(),)* }
            }

            pub fn params(&self) -> Vec<ParamSpec> {
                match self { $(Op::$variant(op) => op.params(),)* }
            }

            pub fn infer_shape(&self, inputs: &[&Shape]) -> Result<Shape, ShapeError> {
                match self { $(Op::$variant(op) => op.infer_shape(inputs),)* }
            }

            pub fn flops(&self, inputs: &[&Shape], output: &Shape) -> u128 {
                match self { $(Op::$variant(op) => op.flops(inputs, output),)* }
            }

            pub fn backward_keeps_inputs(&self) -> bool {
                match self { $(Op::$variant(op) => op.backward_keeps_inputs(),)* }
            }

            pub fn forward<T: Real>(&self, cx: Forward<'_, T>) {
                match self { $(Op::$variant(op) => op.forward(cx),)* }
            }

            pub fn backward<T: Real>(&self, cx: Backward<'_, '_, T>, dy: Vec<T>) {
                match self { $(Op::$variant(op) => op.backward(cx, dy),)* }
            }

            pub fn lower_onnx(&self, cx: &mut Lowerer<'_>, name: &str, ins: &[&str], out: &str) {
                match self { $(Op::$variant(op) => op.lower_onnx(cx, name, ins, out),)* }
            }

            pub fn lower_backward(&self, cx: &mut Lowerer<'_>, name: &str, at: &GradValues<'_>) -> LoweredGrads {
                match self { $(Op::$variant(op) => op.lower_backward(cx, name, at),)* }
            }

            pub fn torch_layer(&self) -> Option<String> {
                match self { $(Op::$variant(op) => op.torch_layer(),)* }
            }

            pub fn torch_forward(&self, name: &str, ins: &[&str]) -> String {
                match self { $(Op::$variant(op) => op.torch_forward(name, ins),)* }
            }

            pub fn torch_helper(&self) -> &'static str {
                match self { $(Op::$variant(op) => op.torch_helper(),)* }
            }
        }
    };
}

registry! {
    input::Input,
    timestep::Timestep,
    label::Label,
    timestep_embedding::TimestepEmbedding,
    linear::Linear,
    conv2d::Conv2d,
    conv_transpose2d::ConvTranspose2d,
    group_norm::GroupNorm,
    silu::Silu,
    add::Add,
    add_channel_bias::AddChannelBias,
    scale_channels::ScaleChannels,
    concat::Concat,
    upsample_nearest::UpsampleNearest,
    attention::Attention,
    embedding::Embedding,
}

impl Op {
    pub fn param_count(&self) -> usize {
        self.params().iter().map(ParamSpec::numel).sum()
    }
}
