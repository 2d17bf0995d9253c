//! What the network is trained to predict from x_t: the noise (Ho et al. 2020) or the velocity
//! v = sqrt(abar) noise - sqrt(1 - abar) x_0 (Salimans & Ho 2022). Both carry the same
//! information; they differ in how an error of the network becomes an error of the clean image.
//! With the noise, x_0 = (x_t - sqrt(1 - abar) noise) / sqrt(abar) multiplies the error by
//! 1 / sqrt(abar), which is huge at the noisiest timesteps, where a sample's shape is decided;
//! with the velocity the clean image is x_0 = sqrt(abar) x_t - sqrt(1 - abar) v, never amplified.

/// The network's output, as recorded in checkpoints (`[train] prediction`) and in ONNX metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Prediction {
    /// The noise that was added (epsilon).
    Noise,
    /// The velocity v = sqrt(abar) noise - sqrt(1 - abar) x_0.
    Velocity,
}

impl Prediction {
    pub fn name(self) -> &'static str {
        match self {
            Prediction::Noise => "noise",
            Prediction::Velocity => "velocity",
        }
    }

    pub fn parse(s: &str) -> Option<Prediction> {
        match s {
            "noise" => Some(Prediction::Noise),
            "velocity" => Some(Prediction::Velocity),
            _ => None,
        }
    }

    /// The training target for one value at alpha_bar `ab`, given the clean value and its noise.
    pub fn target(self, ab: f64, x0: f64, noise: f64) -> f64 {
        match self {
            Prediction::Noise => noise,
            Prediction::Velocity => ab.sqrt() * noise - (1.0 - ab).sqrt() * x0,
        }
    }

    /// The clean image and noise estimates (x0_hat, eps_hat) from x_t and the network's output.
    pub fn estimates(self, ab: f64, x_t: f64, output: f64) -> (f64, f64) {
        let (a, s) = (ab.sqrt(), (1.0 - ab).sqrt());
        match self {
            Prediction::Noise => ((x_t - s * output) / a, output),
            Prediction::Velocity => (a * x_t - s * output, s * x_t + a * output),
        }
    }

    /// The loss weight of min-SNR-gamma (Hang et al. 2023) at signal-to-noise ratio `snr`: the
    /// x_0 loss weighted by min(SNR, gamma), written for this target. The noise loss is SNR times
    /// the x_0 loss, the velocity loss (SNR + 1) times. `gamma` 0: no weighting (plain MSE).
    pub fn min_snr_weight(self, snr: f64, gamma: f64) -> f64 {
        if gamma <= 0.0 {
            return 1.0;
        }
        match self {
            Prediction::Noise => snr.min(gamma) / snr,
            Prediction::Velocity => snr.min(gamma) / (snr + 1.0),
        }
    }
}

impl std::fmt::Display for Prediction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// x_t built from (x0, noise) and the target for it must give back x0 and noise exactly.
    #[test]
    fn estimates_invert_the_target() {
        for pred in [Prediction::Noise, Prediction::Velocity] {
            for ab in [0.9999f64, 0.7, 0.2, 1e-6] {
                let (x0, noise) = (0.37, -1.3);
                let x_t = ab.sqrt() * x0 + (1.0f64 - ab).sqrt() * noise;
                let (x0_hat, eps_hat) = pred.estimates(ab, x_t, pred.target(ab, x0, noise));
                let tol = if pred == Prediction::Noise { 1e-12 / ab.sqrt() } else { 1e-12 };
                assert!((x0_hat - x0).abs() < tol, "{pred} abar {ab}: x0 {x0_hat}");
                assert!((eps_hat - noise).abs() < 1e-12, "{pred} abar {ab}: noise {eps_hat}");
            }
        }
    }

    /// Both weightings put the same weight on the error of x0: noise error^2 = SNR x0 error^2,
    /// velocity error^2 = (SNR + 1) x0 error^2.
    #[test]
    fn min_snr_weights_the_clean_image_error_alike() {
        for snr in [1e-3f64, 0.5, 5.0, 40.0, 1e4] {
            let x0_weight = snr.min(5.0);
            let noise = Prediction::Noise.min_snr_weight(snr, 5.0) * snr;
            let velocity = Prediction::Velocity.min_snr_weight(snr, 5.0) * (snr + 1.0);
            assert!((noise - x0_weight).abs() < 1e-9 && (velocity - x0_weight).abs() < 1e-9, "snr {snr}");
            assert_eq!(Prediction::Velocity.min_snr_weight(snr, 0.0), 1.0);
        }
    }
}
