//! Exponential moving average of the weights, the weights sampling and export use by default.
//!
//! A fixed decay such as 0.999 averages over ~1000 steps, longer than a short run, so the average
//! would still be mostly the random initialisation. The decay therefore warms up as
//! (1 + step) / (10 + step), capped at the configured maximum.

use ndarray::Zip;

use crate::params::Params;

pub fn ema_decay(max_decay: f64, step: u64) -> f64 {
    max_decay.min((1.0 + step as f64) / (10.0 + step as f64))
}

/// ema = decay * ema + (1 - decay) * params, after the update of step `step` (1-based).
pub fn update_ema(ema: &mut Params, params: &Params, max_decay: f64, step: u64) {
    let d = ema_decay(max_decay, step) as f32;
    for (e, p) in ema.tensors.iter_mut().zip(&params.tensors) {
        Zip::from(e).and(p).for_each(|e, &p| *e = d * *e + (1.0 - d) * p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::ArrayD;

    #[test]
    fn decay_warms_up_and_caps() {
        assert!((ema_decay(0.999, 0) - 0.1).abs() < 1e-12);
        assert!((ema_decay(0.999, 90) - 0.91).abs() < 1e-12);
        assert_eq!(ema_decay(0.999, 1_000_000), 0.999);
        let mut ema = Params { names: vec!["w".into()], tensors: vec![ArrayD::zeros(vec![2])] };
        let p = Params { names: vec!["w".into()], tensors: vec![ArrayD::from_elem(vec![2], 1.0)] };
        update_ema(&mut ema, &p, 0.999, 0);
        assert!((ema.tensors[0][[0]] - 0.9).abs() < 1e-6);
    }
}
