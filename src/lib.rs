//! mdc: compile a diffusion U-Net written as a TOML graph of blocks.
//!
//! Data flow: model file --(dsl)--> block graph --(build)--> [`graph::Graph`] of primitive ops,
//! shape-checked; then [`interp`] runs it forward and backward, `train` fits it, `onnx` lowers it.

#[cfg(not(target_endian = "little"))]
compile_error!("mdc reads and writes little-endian tensor files and needs a little-endian target");

pub mod base;
pub mod bench;
pub mod check;
pub mod cli;
pub mod data;
pub mod diffusion;
pub mod dsl;
pub mod eval;
pub mod graph;
pub mod interp;
pub mod kernels;
pub mod model;
pub mod onnx;
pub mod onnx_ir;
pub mod ops;
pub mod params;
pub mod recipe;
pub mod runtime;
pub mod torch;
pub mod train;
pub mod train_step;
