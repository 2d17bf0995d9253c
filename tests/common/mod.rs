//! Helpers shared by the interpreter tests.

use mdc::graph::{Graph, NodeId, PrimitiveGraphBuilder};

use mdc::ops::{Input, Timestep};

/// A graph `x [c, h, w]` -> body -> output; `body` gets the builder, x and t.
pub fn graph_of(
    c: usize,
    h: usize,
    w: usize,
    body: impl FnOnce(&mut PrimitiveGraphBuilder, NodeId, NodeId) -> NodeId,
) -> Graph {
    let mut b = PrimitiveGraphBuilder::new();
    let x = b.add("x", "x", Input { channels: c, height: h, width: w }, &[]).unwrap();
    let t = b.add("t", "t", Timestep, &[]).unwrap();
    let out = body(&mut b, x, t);
    b.finish(out)
}

/// Conv geometries the tests run: (in, out, kernel, stride, padding, h, w). Strided, padded,
/// even and odd kernels, non-square images, and same-size convs that narrow or keep the channels
/// (whose backward computes dx as a convolution with the flipped kernel).
pub const CONV_CASES: [(usize, usize, usize, usize, usize, usize, usize); 11] = [
    (3, 4, 3, 1, 1, 5, 7),
    (3, 4, 3, 2, 1, 7, 6),
    (2, 5, 1, 1, 0, 4, 6),
    (2, 3, 1, 2, 0, 5, 5),
    (2, 3, 2, 2, 0, 6, 4),
    (2, 2, 5, 3, 2, 7, 8),
    (4, 2, 3, 1, 0, 6, 5),
    (1, 2, 3, 1, 2, 3, 4),
    (4, 2, 3, 1, 1, 5, 7),
    (3, 3, 3, 1, 1, 6, 4),
    (5, 2, 5, 1, 2, 6, 7),
];

/// Transposed-conv geometries the tests run: (in, out, kernel, stride, padding, h, w). Strides 1
/// and 2, paddings 0 and 1 (and one larger than the kernel, which crops), kernels 1 to 4,
/// non-square inputs, a same-size case and channels that widen and narrow.
pub const CONV_TRANSPOSE_CASES: [(usize, usize, usize, usize, usize, usize, usize); 10] = [
    (3, 4, 3, 1, 1, 5, 7),
    (2, 3, 2, 2, 0, 4, 3),
    (3, 2, 4, 2, 1, 3, 5),
    (2, 3, 3, 2, 1, 4, 6),
    (2, 2, 3, 1, 0, 3, 4),
    (4, 2, 4, 1, 1, 4, 3),
    (3, 2, 2, 1, 0, 2, 5),
    (4, 3, 1, 1, 0, 3, 5),
    (1, 2, 1, 2, 1, 4, 3),
    (2, 3, 3, 2, 0, 3, 2),
];
