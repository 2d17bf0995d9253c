//! The class labels `y` of a conditional model: one integer per image (shape []), 0..classes-1
//! for a class and `classes` for "no label" (the null row of the embedding table, what
//! classifier-free guidance contrasts with). At most one per graph; it reads nothing.
//!
//! With `hide_below`, an image at a timestep below it is given the null label whatever label it
//! came with, in training, in sampling and in the export alike: near the end of sampling the
//! image already shows its class, so the label adds nothing there, and those steps train the
//! unconditional prediction instead (docs/experiments/conditional.md).

use super::{arity, PrimitiveOp, ShapeError};
use crate::base::Shape;

#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    /// Real classes; the null label is `classes` itself.
    pub classes: usize,
    /// Timesteps t < hide_below see the null label (0: none do).
    pub hide_below: usize,
}

impl Label {
    /// The index that means "no label".
    pub fn null(&self) -> usize {
        self.classes
    }

    /// The label the network sees for `label` at timestep `t`.
    pub fn shown(&self, label: f64, t: f64) -> f64 {
        if t < self.hide_below as f64 {
            self.null() as f64
        } else {
            label
        }
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

    /// `y`, with the null label where `t < hide_below` (as [`Label::shown`]).
    fn torch_forward(&self, _name: &str, _ins: &[&str]) -> String {
        if self.hide_below == 0 {
            return "y".into();
        }
        format!("torch.where(t < {}, torch.full_like(y, {}), y)", self.hide_below, self.null())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_a_scalar_per_image_with_the_null_label_after_the_classes() {
        let op = Label { classes: 10, hide_below: 0 };
        assert_eq!(op.infer_shape(&[]), Ok(Shape::scalar()));
        assert_eq!(op.null(), 10);
        assert!(matches!(op.infer_shape(&[&Shape::scalar()]), Err(ShapeError::Arity { .. })));
        assert_eq!(op.shown(7.0, 0.0), 7.0, "nothing hidden by default");
    }

    #[test]
    fn timesteps_below_the_threshold_see_the_null_label() {
        let op = Label { classes: 10, hide_below: 400 };
        assert_eq!(op.shown(7.0, 399.0), 10.0);
        assert_eq!(op.shown(7.0, 0.0), 10.0);
        assert_eq!(op.shown(7.0, 400.0), 7.0);
        assert_eq!(op.shown(10.0, 999.0), 10.0, "the null label stays null");
    }
}
