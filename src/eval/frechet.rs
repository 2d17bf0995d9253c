//! The Fréchet distance between two sets of classifier features, each summarised by its mean and
//! covariance (the distance between the Gaussians fitted to them, as in FID):
//!
//!   d² = |μ₁ − μ₂|² + tr Σ₁ + tr Σ₂ − 2 tr (Σ₁ Σ₂)^½
//!
//! Everything is f64. tr (Σ₁ Σ₂)^½ is computed as tr (Σ₁^½ Σ₂ Σ₁^½)^½: the two matrices are similar,
//! and the second is symmetric positive semi-definite, so a symmetric eigen-decomposition (Jacobi,
//! exact enough and fast at the 64-128 features used here) gives both square roots.

use ndarray::{Array1, Array2, ArrayView2, Axis};

/// Mean and covariance (divisor n − 1) of a set of feature vectors.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureStats {
    pub mean: Array1<f64>,
    pub cov: Array2<f64>,
    /// How many vectors they summarise.
    pub count: usize,
}

impl FeatureStats {
    /// Statistics of `features` [N, D] (N >= 2).
    pub fn from_features(features: ArrayView2<f32>) -> FeatureStats {
        let x = features.mapv(f64::from);
        let n = x.nrows();
        let mean = x.mean_axis(Axis(0)).expect("at least one row");
        let centred = &x - &mean;
        let cov = centred.t().dot(&centred) / (n.max(2) - 1) as f64;
        FeatureStats { mean, cov, count: n }
    }

    pub fn dim(&self) -> usize {
        self.mean.len()
    }
}

/// The Fréchet distance d² between the Gaussians (the number reported as FID; it is a squared
/// distance, by convention). Rounding can make it slightly negative for identical inputs: clamped to 0.
pub fn frechet_distance(a: &FeatureStats, b: &FeatureStats) -> f64 {
    assert_eq!(a.dim(), b.dim(), "feature statistics of different sizes");
    let diff = &a.mean - &b.mean;
    let root_a = psd_sqrt(&a.cov);
    let middle = root_a.dot(&b.cov).dot(&root_a);
    let trace_sqrt: f64 = symmetric_eigen(&symmetrise(&middle)).0.iter().map(|&l| l.max(0.0).sqrt()).sum();
    (diff.dot(&diff) + a.cov.diag().sum() + b.cov.diag().sum() - 2.0 * trace_sqrt).max(0.0)
}

/// The symmetric square root of a symmetric positive semi-definite matrix (negative eigenvalues,
/// which only rounding produces, count as 0).
pub fn psd_sqrt(m: &Array2<f64>) -> Array2<f64> {
    let (values, vectors) = symmetric_eigen(m);
    let roots = values.mapv(|l| l.max(0.0).sqrt());
    (&vectors * &roots).dot(&vectors.t())
}

fn symmetrise(m: &Array2<f64>) -> Array2<f64> {
    (m + &m.t()) / 2.0
}

/// Eigenvalues and eigenvectors (as columns) of a symmetric matrix, by cyclic Jacobi rotations:
/// each rotation zeroes one off-diagonal pair; sweeps repeat until the off-diagonal part is
/// negligible against the whole matrix (quadratic convergence: a handful of sweeps).
pub fn symmetric_eigen(m: &Array2<f64>) -> (Array1<f64>, Array2<f64>) {
    let n = m.nrows();
    assert_eq!(n, m.ncols(), "square matrix expected");
    let mut a = m.clone();
    let mut v = Array2::<f64>::eye(n);
    let total: f64 = a.iter().map(|x| x * x).sum();
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[[i, j]] * a[[i, j]])
            .sum();
        if off <= total * 1e-30 || off == 0.0 {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[[p, q]];
                if apq == 0.0 {
                    continue;
                }
                // The rotation angle that zeroes a[p][q] (Golub & Van Loan, Algorithm 8.4.2).
                let theta = (a[[q, q]] - a[[p, p]]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (akp, akq) = (a[[k, p]], a[[k, q]]);
                    a[[k, p]] = c * akp - s * akq;
                    a[[k, q]] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[[p, k]], a[[q, k]]);
                    a[[p, k]] = c * apk - s * aqk;
                    a[[q, k]] = s * apk + c * aqk;
                }
                for k in 0..n {
                    let (vkp, vkq) = (v[[k, p]], v[[k, q]]);
                    v[[k, p]] = c * vkp - s * vkq;
                    v[[k, q]] = s * vkp + c * vkq;
                }
            }
        }
    }
    (a.diag().to_owned(), v)
}

#[cfg(test)]
mod tests {
    use ndarray::{array, Array2};

    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * (1.0 + b.abs())
    }

    #[test]
    fn eigen_reconstructs_the_matrix() {
        let m = array![[4.0, 1.0, -2.0], [1.0, 2.0, 0.5], [-2.0, 0.5, 3.0]];
        let (l, v) = symmetric_eigen(&m);
        let back = (&v * &l).dot(&v.t());
        assert!(back.iter().zip(m.iter()).all(|(a, b)| close(*a, *b, 1e-12)), "{back}");
        assert!(v.t().dot(&v).iter().zip(Array2::<f64>::eye(3).iter()).all(|(a, b)| close(*a, *b, 1e-12)));
        // The characteristic polynomial's roots sum to the trace and multiply to the determinant.
        assert!(close(l.sum(), 9.0, 1e-12));
        assert!(close(l.product(), 4.0 * (6.0 - 0.25) - (3.0 + 1.0) - 2.0 * (0.5 + 4.0), 1e-12));
    }

    #[test]
    fn square_root_squares_back() {
        let m = array![[2.0, 1.0], [1.0, 2.0]];
        let r = psd_sqrt(&m);
        // Eigenvalues 3 and 1 with eigenvectors (1, 1) and (1, -1): the root is known in closed form.
        let (a, b) = ((3f64.sqrt() + 1.0) / 2.0, (3f64.sqrt() - 1.0) / 2.0);
        assert!(close(r[[0, 0]], a, 1e-12) && close(r[[0, 1]], b, 1e-12), "{r}");
        assert!(r.dot(&r).iter().zip(m.iter()).all(|(x, y)| close(*x, *y, 1e-12)));
    }

    #[test]
    fn distance_of_known_gaussians() {
        // Diagonal covariances: d² = |Δμ|² + Σ (√a − √b)².
        let a = FeatureStats { mean: array![0.0, 1.0], cov: Array2::from_diag(&array![4.0, 9.0]), count: 10 };
        let b = FeatureStats { mean: array![3.0, 1.0], cov: Array2::from_diag(&array![1.0, 1.0]), count: 10 };
        assert!(close(frechet_distance(&a, &b), 9.0 + 1.0 + 4.0, 1e-12));
        assert_eq!(frechet_distance(&a, &a), 0.0);
    }

    /// Against numbers computed once with numpy (eigh-based sqrtm, f64) for the same matrices.
    #[test]
    fn distance_matches_numpy() {
        let a = FeatureStats {
            mean: array![0.5, -1.0, 2.0],
            cov: array![[2.0, 0.3, -0.4], [0.3, 1.5, 0.2], [-0.4, 0.2, 0.8]],
            count: 10,
        };
        let b = FeatureStats {
            mean: array![0.0, 0.0, 1.0],
            cov: array![[1.0, -0.2, 0.1], [-0.2, 2.5, 0.6], [0.1, 0.6, 1.2]],
            count: 10,
        };
        let d = frechet_distance(&a, &b);
        assert!(close(d, NUMPY_DISTANCE, 1e-10), "{d}");
    }

    /// numpy 2.4: w, V = eigh(S1); r = V @ diag(sqrt(w)) @ V.T; tr sqrt(r @ S2 @ r) via eigvalsh.
    const NUMPY_DISTANCE: f64 = 2.8019768221441375;

    #[test]
    fn stats_of_features() {
        let f = array![[1.0f32, 2.0], [3.0, 2.0], [5.0, 8.0]];
        let s = FeatureStats::from_features(f.view());
        assert_eq!(s.mean, array![3.0, 4.0]);
        assert_eq!(s.cov, array![[4.0, 6.0], [6.0, 12.0]]);
        assert_eq!(s.count, 3);
    }
}
