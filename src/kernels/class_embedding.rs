//! A table lookup per image: out[n] = table[label[n]], and its weight gradient, the rows of dy
//! added into the rows the labels picked. Labels arrive as whole numbers in the value type.

use crate::kernels::real::Real;

/// The row index a label value stands for (checked: a label outside the table is a caller bug,
/// since data labels are checked before training and sampling start).
fn row<T: Real>(label: T, rows: usize) -> usize {
    let v = label.to_f64();
    assert!(
        v >= 0.0 && v.fract() == 0.0 && (v as usize) < rows,
        "class label {v} is outside the embedding table's {rows} rows"
    );
    v as usize
}

pub fn forward<T: Real>(rows: usize, features: usize, labels: &[T], table: &[T], out: &mut [T]) {
    for (o, &y) in out.chunks_exact_mut(features).zip(labels) {
        let r = row(y, rows);
        o.copy_from_slice(&table[r * features..(r + 1) * features]);
    }
}

/// Overwrites `dtable` with the gradient of sum(dy * out).
pub fn backward<T: Real>(rows: usize, features: usize, labels: &[T], dy: &[T], dtable: &mut [T]) {
    dtable.fill(T::ZERO);
    for (g, &y) in dy.chunks_exact(features).zip(labels) {
        let r = row(y, rows);
        for (d, &gv) in dtable[r * features..(r + 1) * features].iter_mut().zip(g) {
            *d += gv;
        }
    }
}
