//! The largest sizes mdc accepts, from any source (a model file, `[train]`, the command line, a
//! checkpoint's or an export's metadata): beyond them a run would exhaust memory long before it
//! was useful, so they are refused with a message instead.

/// Largest channel count (and feature count, heads, groups) a model may ask for.
pub const MAX_CHANNELS: usize = 1 << 16;
/// Largest height or width of the image input.
pub const MAX_SIZE: usize = 1 << 14;
/// Most classes a conditional model may declare.
pub const MAX_CLASSES: usize = 1 << 16;
/// Largest kernel size, stride or padding of a conv.
pub const MAX_KERNEL: usize = 63;
/// Most images per step or per sample run (`batch`, `samples`, `mdc sample -n`): more would
/// exhaust memory long before it was useful.
pub const MAX_IMAGES: u64 = 4096;
/// Most diffusion timesteps T (`timesteps`, `mdc sample --timesteps`, an exported model's metadata).
pub const MAX_TIMESTEPS: u64 = 100_000;
