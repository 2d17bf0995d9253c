//! The noisy image `x`: [C, H, W] per image. Exactly one per graph; it reads nothing.

use super::{arity, PrimitiveOp, ShapeError};
use crate::base::Shape;

#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

impl PrimitiveOp for Input {
    fn kind(&self) -> &'static str {
        "input"
    }

    fn infer_shape(&self, inputs: &[&Shape]) -> Result<Shape, ShapeError> {
        arity(inputs, 0)?;
        Ok(Shape::image(self.channels, self.height, self.width))
    }

    graph_input_methods!();

    fn torch_forward(&self, _name: &str, _ins: &[&str]) -> String {
        "x".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_an_image_and_reads_nothing() {
        let op = Input { channels: 3, height: 8, width: 6 };
        assert_eq!(op.infer_shape(&[]), Ok(Shape::image(3, 8, 6)));
        let s = Shape::image(3, 8, 6);
        assert_eq!(op.infer_shape(&[&s]), Err(ShapeError::Arity { expected: 0, found: 1 }));
    }
}
