//! The training step (loss, AdamW, the stage switch) and held-out evaluation.

use burn::module::AutodiffModule;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{ElementConversion, Int, Tensor, TensorData};

use super::{schedule, TrainConfig};
use crate::nn::{BitNet, BitNetModel};
use crate::{ActQuant, TernaryBackend};

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
    pub(super) config: TrainConfig,
    pub(super) optim: OptimizerAdaptor<AdamW, BitNetModel<B>, B>,
    pub(super) stage2: bool,
    pub(super) step: usize,
}

impl<B: AutodiffBackend + TernaryBackend> Trainer<B>
where
    B::InnerBackend: TernaryBackend,
{
    /// A freshly initialized trainable model; the same `config.seed` gives the same initial weights.
    pub fn new(config: TrainConfig, device: &B::Device) -> Self {
        B::seed(device, config.seed);
        let net = BitNet::init(config.model.clone(), true, device);
        Self {
            net,
            optim: optimizer(config.weight_decay),
            config,
            stage2: false,
            step: 0,
        }
    }

    /// The run's hyper-parameters.
    pub fn config(&self) -> &TrainConfig {
        &self.config
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
            self.optim = optimizer(0.0).load_record(record);
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

/// AdamW with Burn's defaults (β 0.9 / 0.999) and the given weight decay.
pub(super) fn optimizer<B: AutodiffBackend + TernaryBackend>(
    weight_decay: f64,
) -> OptimizerAdaptor<AdamW, BitNetModel<B>, B>
where
    B::InnerBackend: TernaryBackend,
{
    AdamWConfig::new()
        .with_weight_decay(weight_decay as f32)
        .init()
}
