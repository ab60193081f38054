//! Training BitNet b1.58 from scratch with quantization-aware training: random windows of a token stream, the
//! paper's two-stage schedule (scaled down), AdamW, and held-out evaluation. The model trained is the same
//! [`BitNet`] that runs inference; [`BitNet::freeze`] turns its latent weights into packed ternary ones.

use burn::config::Config;
use burn::module::AutodiffModule;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{ElementConversion, Int, Tensor, TensorData};

use crate::model::{BitNet, BitNetConfig, BitNetModel};
use crate::rng::Rng;
use crate::{ActQuant, TernaryBackend};

/// Hyper-parameters of a training run.
#[derive(Config, Debug)]
pub struct TrainConfig {
    /// The model (its `trainable` flag is set by [`Trainer::new`]).
    pub model: BitNetConfig,
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
    /// Seed of the window sampler (the weights' initialization follows the backend's seed).
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

/// Random `seq_len + 1` windows of a token stream (inputs and next-token targets), deterministic from a seed.
pub struct Windows<'a> {
    tokens: &'a [u32],
    seq_len: usize,
    rng: Rng,
}

impl<'a> Windows<'a> {
    /// Windows over `tokens` (which must hold more than `seq_len` tokens).
    pub fn new(tokens: &'a [u32], seq_len: usize, seed: u64) -> Self {
        assert!(
            tokens.len() > seq_len,
            "{} tokens for windows of {seq_len}",
            tokens.len()
        );
        Self {
            tokens,
            seq_len,
            rng: Rng::new(seed),
        }
    }

    /// `batch` random windows: (inputs, targets), each `[batch][seq_len]`.
    pub fn sample(&mut self, batch: usize) -> (Vec<Vec<u32>>, Vec<Vec<u32>>) {
        let starts = self.tokens.len() - self.seq_len;
        (0..batch)
            .map(|_| {
                let s = (self.rng.next_u64() % starts as u64) as usize;
                let w = &self.tokens[s..s + self.seq_len + 1];
                (w[..self.seq_len].to_vec(), w[1..].to_vec())
            })
            .unzip()
    }
}

/// Mean next-token cross-entropy (nats) of `inputs` → `targets` under `net`, as a tensor for backward.
pub fn loss<B: TernaryBackend>(
    net: &BitNet<B>,
    inputs: &[Vec<u32>],
    targets: &[Vec<u32>],
) -> Tensor<B, 1> {
    let (batch, seq) = (inputs.len(), inputs[0].len());
    let mut cache = net.new_cache(batch, seq);
    let logits = net
        .forward(inputs, &mut cache, ActQuant::Int8)
        .expect("windows fit the context")
        .reshape([batch * seq, net.config.vocab_size]);
    let ids: Vec<i64> = targets.iter().flatten().map(|&t| t as i64).collect();
    let targets = Tensor::<B, 1, Int>::from_data(TensorData::new(ids, [batch * seq]), net.device());
    CrossEntropyLossConfig::new()
        .init(net.device())
        .forward(logits, targets)
}

/// Mean loss over consecutive `seq_len` windows of `tokens` (up to `max_windows` of them); `exp` of it is the
/// perplexity.
pub fn evaluate<B: TernaryBackend>(
    net: &BitNet<B>,
    tokens: &[u32],
    seq_len: usize,
    max_windows: usize,
) -> f64 {
    let windows: Vec<&[u32]> = tokens
        .windows(seq_len + 1)
        .step_by(seq_len)
        .take(max_windows)
        .collect();
    let total: f64 = windows
        .iter()
        .map(|w| {
            let l = loss(net, &[w[..seq_len].to_vec()], &[w[1..].to_vec()]);
            l.into_scalar().elem::<f64>()
        })
        .sum();
    total / windows.len().max(1) as f64
}

/// A model being trained and its optimizer.
pub struct Trainer<B: AutodiffBackend + TernaryBackend>
where
    B::InnerBackend: TernaryBackend,
{
    /// The model (latent weights while training).
    pub net: BitNet<B>,
    config: TrainConfig,
    optim: OptimizerAdaptor<AdamW, BitNetModel<B>, B>,
    stage2: bool,
    step: usize,
}

impl<B: AutodiffBackend + TernaryBackend> Trainer<B>
where
    B::InnerBackend: TernaryBackend,
{
    /// A freshly initialized trainable model.
    pub fn new(config: TrainConfig, device: &B::Device) -> Self {
        let net = config.model.clone().with_trainable(true).init::<B>(device);
        let optim = AdamWConfig::new()
            .with_weight_decay(config.weight_decay as f32)
            .init();
        Self {
            net,
            config,
            optim,
            stage2: false,
            step: 0,
        }
    }

    /// The model as it stands, on the inner backend: no gradient tracking, for evaluation and sampling.
    pub fn inference_net(&self) -> BitNet<B::InnerBackend> {
        BitNet::new(
            self.net.model.valid(),
            self.net.config.clone(),
            self.net.device(),
        )
    }

    /// Steps taken.
    pub fn steps_done(&self) -> usize {
        self.step
    }

    /// One optimizer step on a batch; returns its loss and the learning rate used.
    pub fn step(&mut self, inputs: &[Vec<u32>], targets: &[Vec<u32>]) -> (f64, f64) {
        let (lr, wd) = schedule(&self.config, self.step);
        if wd == 0.0 && !self.stage2 {
            // Stage 2: weight decay off; the Adam moments carry over.
            let record = self.optim.to_record();
            self.optim = AdamWConfig::new()
                .with_weight_decay(0.0)
                .init()
                .load_record(record);
            self.stage2 = true;
        }
        let l = loss(&self.net, inputs, targets);
        let value = l.clone().into_scalar().elem::<f64>();
        let grads = GradientsParams::from_grads(l.backward(), &self.net.model);
        self.net.model = self.optim.step(lr, self.net.model.clone(), grads);
        self.step += 1;
        (value, lr)
    }
}

/// Cross-entropy (nats per token) of `val` under `train`'s add-one-smoothed token frequencies: the baseline a
/// language model has to beat.
pub fn unigram_loss(train: &[u32], val: &[u32], vocab: usize) -> f64 {
    let mut counts = vec![1.0f64; vocab];
    for &t in train {
        counts[t as usize] += 1.0;
    }
    let total: f64 = counts.iter().sum();
    -val.iter()
        .map(|&t| (counts[t as usize] / total).ln())
        .sum::<f64>()
        / val.len().max(1) as f64
}
