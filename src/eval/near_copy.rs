//! Near-copies: a generated image that lies closer to some training image (in pixel space) than
//! real unseen images lie to their nearest training image is a copy, not a new image.
//!
//! The threshold is calibrated against the training set being tested, at run time: held-out real
//! images (never trained on) are each matched to their nearest training image, and the threshold is
//! the 1st percentile of those distances. So a real held-out image falls below it 1 % of the time
//! by construction, a memorised training image (distance ≈ 0) always does, and the threshold follows
//! the training set: a larger set packs images closer together and lowers it. Distances are reported
//! as the RMS pixel difference in [-1, 1] units (the L2 distance over √pixels), so 0.1 is ~13 grey
//! levels per pixel.

use ndarray::{Array1, Array2, ArrayView4, Axis};

/// Which percentile of held-out distances is the threshold (see the module comment).
pub const CALIBRATION_PERCENTILE: f64 = 1.0;

/// Images compared per matrix product (bounds memory at 60k training images).
const CHUNK: usize = 256;

/// The training images, flattened, with their squared norms.
pub struct TrainingSet {
    rows: Array2<f32>,
    norms: Array1<f32>,
}

impl TrainingSet {
    pub fn new(images: ArrayView4<f32>) -> TrainingSet {
        let rows = flatten(images);
        let norms = rows.map_axis(Axis(1), |r| r.dot(&r));
        TrainingSet { rows, norms }
    }

    pub fn len(&self) -> usize {
        self.rows.nrows()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// For each image, the RMS pixel distance to its nearest training image. The nearest one is
    /// found with |a|² + |b|² − 2a·b (one matrix product), then its distance recomputed directly,
    /// so an exact copy scores 0 and not f32 cancellation noise.
    pub fn nearest_distances(&self, images: ArrayView4<f32>) -> Vec<f64> {
        let queries = flatten(images);
        let pixels = queries.ncols().max(1) as f64;
        let mut out = Vec::with_capacity(queries.nrows());
        for chunk in queries.axis_chunks_iter(Axis(0), CHUNK) {
            let dots = chunk.dot(&self.rows.t());
            for (q, row) in chunk.outer_iter().zip(dots.outer_iter()) {
                let qn = q.dot(&q);
                let nearest = row
                    .iter()
                    .zip(self.norms.iter())
                    .map(|(&d, &n)| qn + n - 2.0 * d)
                    .enumerate()
                    .min_by(|a, b| a.1.total_cmp(&b.1))
                    .map(|(i, _)| i)
                    .expect("a non-empty training set");
                let sq: f64 = q
                    .iter()
                    .zip(self.rows.row(nearest).iter())
                    .map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2))
                    .sum();
                out.push((sq / pixels).sqrt());
            }
        }
        out
    }
}

/// The `percentile` (0-100) of `values`, by the nearest-rank method.
pub fn percentile(values: &[f64], percentile: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((percentile / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    v[rank.min(v.len()) - 1]
}

/// The fraction of `distances` strictly below `threshold`.
pub fn fraction_below(distances: &[f64], threshold: f64) -> f64 {
    distances.iter().filter(|&&d| d < threshold).count() as f64 / distances.len().max(1) as f64
}

fn flatten(images: ArrayView4<f32>) -> Array2<f32> {
    let n = images.len_of(Axis(0));
    let per = images.len() / n.max(1);
    images.as_standard_layout().into_owned().into_shape_with_order([n, per]).expect("contiguous")
}

#[cfg(test)]
mod tests {
    use ndarray::Array4;

    use super::*;

    #[test]
    fn nearest_is_exact_and_scaled() {
        let train = Array4::from_shape_fn([3, 1, 2, 2], |(n, _, y, x)| {
            (n as f32) * 0.5 - 1.0 + (y * 2 + x) as f32 * 0.01
        });
        let set = TrainingSet::new(train.view());
        assert_eq!(set.nearest_distances(train.view()), vec![0.0, 0.0, 0.0]);
        // Every pixel 0.1 above image 1: RMS distance 0.1.
        let q = train.slice(ndarray::s![1..2, .., .., ..]).mapv(|v| v + 0.1);
        let d = set.nearest_distances(q.view());
        assert!((d[0] - 0.1).abs() < 1e-6, "{d:?}");
    }

    #[test]
    fn percentile_and_fraction() {
        let v: Vec<f64> = (1..=200).map(f64::from).collect();
        assert_eq!(percentile(&v, 1.0), 2.0);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&v, 100.0), 200.0);
        assert_eq!(fraction_below(&v, 2.0), 1.0 / 200.0);
    }
}
