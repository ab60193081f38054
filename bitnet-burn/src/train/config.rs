//! Hyper-parameters of a training run and BitNet b1.58's two-stage learning-rate schedule.

use burn::config::Config;

use bitnet_gguf::ModelConfig;

/// Hyper-parameters of a training run.
#[derive(Config, Debug)]
pub struct TrainConfig {
    /// The model's shape (built with trainable latent weights by [`super::Trainer::new`]).
    pub model: ModelConfig,
    /// Tokens per training window.
    #[config(default = 128)]
    pub seq_len: usize,
    /// Windows per step.
    #[config(default = 16)]
    pub batch: usize,
    /// Optimizer steps.
    #[config(default = 1000)]
    pub steps: usize,
    /// Peak learning rate of stage 1 (BitNet b1.58 trains ternary models at higher rates than float ones).
    #[config(default = 3e-3)]
    pub lr: f64,
    /// Linear warmup steps.
    #[config(default = 50)]
    pub warmup: usize,
    /// AdamW weight decay of stage 1 (stage 2 uses none).
    #[config(default = 0.1)]
    pub weight_decay: f64,
    /// Seed of the weights' initialization (the backend's generator) and of the window sampler.
    #[config(default = 42)]
    pub seed: u64,
}

/// The learning rate and weight decay at `step` (0-based): BitNet b1.58's two-stage recipe. Stage 1 (first half)
/// warms up linearly to `lr` then decays linearly to `lr / 2`; stage 2 restarts at `lr / 4` and decays linearly
/// to zero, with weight decay off.
pub fn schedule(c: &TrainConfig, step: usize) -> (f64, f64) {
    let half = (c.steps / 2).max(1);
    if step < half {
        let warm = if step < c.warmup {
            (step + 1) as f64 / c.warmup as f64
        } else {
            1.0
        };
        let decay = 1.0 - 0.5 * step as f64 / half as f64;
        (c.lr * warm.min(1.0) * decay, c.weight_decay)
    } else {
        let left = c.steps.saturating_sub(step) as f64 / (c.steps - half).max(1) as f64;
        (c.lr * 0.25 * left, 0.0)
    }
}
