//! Learning rate over the run: linear warmup, then cosine decay towards zero.

use super::TrainConfig;

/// The learning rate for step `step` (1-based, as the progress bar counts).
pub fn learning_rate(cfg: &TrainConfig, step: u64) -> f64 {
    let i = step.saturating_sub(1); // 0-based index of this update
    let warmup = cfg.warmup_steps();
    if i < warmup {
        return cfg.lr * (i + 1) as f64 / warmup as f64;
    }
    let decay_steps = cfg.steps.saturating_sub(warmup).max(1);
    let progress = ((i - warmup) as f64 / decay_steps as f64).min(1.0);
    cfg.lr * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warms_up_linearly_then_follows_a_cosine() {
        let cfg = TrainConfig { steps: 110, lr: 1e-3, warmup: Some(10), ..TrainConfig::default() };
        assert!((learning_rate(&cfg, 1) - 1e-4).abs() < 1e-12);
        assert!((learning_rate(&cfg, 5) - 5e-4).abs() < 1e-12);
        assert!((learning_rate(&cfg, 10) - 1e-3).abs() < 1e-12);
        assert!((learning_rate(&cfg, 11) - 1e-3).abs() < 1e-12);
        // Half-way through the decay: half the peak.
        assert!((learning_rate(&cfg, 61) - 5e-4).abs() < 1e-12);
        let last = learning_rate(&cfg, 110);
        assert!(last > 0.0 && last < 1e-6, "{last}");
        let no_warmup = TrainConfig { warmup: Some(0), ..cfg };
        assert!((learning_rate(&no_warmup, 1) - 1e-3).abs() < 1e-12);
    }
}
