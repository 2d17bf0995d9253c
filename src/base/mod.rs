//! The bottom layer: plain types and helpers that every other layer may use and that import
//! nothing of mdc's own.

pub mod fsutil;
pub mod image_io;
pub mod limits;
pub mod rng;
pub mod safetensors_out;
pub mod shape;
pub mod suggest;
pub mod timing;

pub use shape::Shape;
