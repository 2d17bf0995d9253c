//! Layer 0: contracts every other layer shares and that import nothing of mdc.

pub mod limits;
pub mod suggest;
