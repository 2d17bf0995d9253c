//! Per-image tensor shapes. The batch dimension N is symbolic and never stored.

use std::fmt;

/// The dimensions of one image's tensor, batch left out: [C, H, W] for feature maps,
/// [D] for embeddings, [] for the timestep.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Shape(pub Vec<usize>);

impl Shape {
    pub fn image(c: usize, h: usize, w: usize) -> Self {
        Shape(vec![c, h, w])
    }
    pub fn vector(d: usize) -> Self {
        Shape(vec![d])
    }
    pub fn scalar() -> Self {
        Shape(vec![])
    }
    pub fn is_scalar(&self) -> bool {
        self.0.is_empty()
    }
    pub fn as_image(&self) -> Option<(usize, usize, usize)> {
        match self.0[..] {
            [c, h, w] => Some((c, h, w)),
            _ => None,
        }
    }
    pub fn as_vector(&self) -> Option<usize> {
        match self.0[..] {
            [d] => Some(d),
            _ => None,
        }
    }
    /// Channels of an image or length of a vector.
    pub fn channels(&self) -> Option<usize> {
        self.0.first().copied()
    }
    /// Elements per image.
    pub fn numel(&self) -> usize {
        self.0.iter().product()
    }
    /// The full shape for a batch of `n`.
    pub fn with_batch(&self, n: usize) -> Vec<usize> {
        let mut v = Vec::with_capacity(self.0.len() + 1);
        v.push(n);
        v.extend_from_slice(&self.0);
        v
    }
}

/// Written as PyTorch users read it: `[N, 64, 14, 14]`.
impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[N")?;
        for d in &self.0 {
            write!(f, ", {d}")?;
        }
        write!(f, "]")
    }
}
