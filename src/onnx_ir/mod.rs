//! The ONNX vocabulary every lowering shares: the protobuf types ([`proto`]), a node builder
//! ([`builder`]) and the [`lower::Lowerer`] context an op's `lower_onnx` writes into. Below the
//! ops; the exporter that walks a graph is `crate::onnx`.

pub mod builder;
pub mod lower;
#[allow(clippy::all, clippy::pedantic, missing_docs)]
#[rustfmt::skip]
pub mod proto;
