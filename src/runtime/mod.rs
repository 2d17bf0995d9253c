//! Running exported models in onnxruntime through `ort`: finding the library at run time
//! ([`discover`]), sessions on CPU or CUDA with the model's metadata ([`OrtDenoiser`]), and
//! forward timing ([`bench`]).

pub mod bench;
pub mod discover;
mod session;
pub mod step_session;

pub use session::{Device, OrtDenoiser, SessionConfig};
