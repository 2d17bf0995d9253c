//! The class labels `y` of a conditional model: one integer per image (shape []), 0..classes-1
//! for a class and `classes` for "no label" (the null row of the embedding table, what
//! classifier-free guidance contrasts with). At most one per graph; it reads nothing.

use super::{arity, PrimitiveOp, ShapeError};
use crate::graph::Shape;

#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    /// Real classes; the null label is `classes` itself.
    pub classes: usize,
}

impl Label {
    /// The index that means "no label".
    pub fn null(&self) -> usize {
        self.classes
    }
}

impl PrimitiveOp for Label {
    fn kind(&self) -> &'static str {
        "label"
    }

    fn infer_shape(&self, inputs: &[&Shape]) -> Result<Shape, ShapeError> {
        arity(inputs, 0)?;
        Ok(Shape::scalar())
    }

    graph_input_methods!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_a_scalar_per_image_with_the_null_label_after_the_classes() {
        let op = Label { classes: 10 };
        assert_eq!(op.infer_shape(&[]), Ok(Shape::scalar()));
        assert_eq!(op.null(), 10);
        assert!(matches!(op.infer_shape(&[&Shape::scalar()]), Err(ShapeError::Arity { .. })));
    }
}
