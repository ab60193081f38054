//! Quantization-aware training: the straight-through estimator's gradients against finite differences of the
//! float model, the frozen (packed) layer against the training forward, a tiny model that learns, seeded
//! initialization and checkpoints that resume a run exactly.

use std::sync::Mutex;

use bitnet_burn::nn::BitLinearConfig;
use bitnet_burn::train::{TrainConfig, Trainer, Windows};
use bitnet_burn::{ActQuant, BitNet, ModelConfig};
use burn::backend::{Autodiff, NdArray};
use burn::module::Param;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::{Distribution, Int, Tensor, TensorData};

type Train = Autodiff<NdArray>;

/// The backend's generator is global: tests that draw from it take turns, so a seeded initialization is not
/// interleaved with another test's draws.
static RNG: Mutex<()> = Mutex::new(());

fn host(t: Tensor<impl burn::tensor::backend::Backend, 2>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().unwrap()
}

/// absmean ternarization as the paper defines it, on the host in f64.
fn ternarize(w: &[f32]) -> Vec<f64> {
    let scale = (w.iter().map(|v| v.abs() as f64).sum::<f64>() / w.len() as f64).max(1e-5);
    w.iter()
        .map(|&v| (v as f64 / scale).round_ties_even().clamp(-1.0, 1.0) * scale)
        .collect()
}

/// Per-token absmax int8 fake quantization, on the host.
fn quantize_rows(x: &[f32], k: usize) -> Vec<f64> {
    x.chunks(k)
        .flat_map(|row| {
            let s = 127.0 / row.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-5);
            row.iter()
                .map(move |&v| ((v * s).round_ties_even().clamp(-128.0, 127.0) / s) as f64)
        })
        .collect()
}

#[test]
fn ste_gradients_equal_the_float_models_gradients_at_the_quantized_point() {
    let _rng = RNG.lock().unwrap_or_else(|e| e.into_inner());
    let device = Default::default();
    let (n, k, m) = (4, 32, 6);
    let w = Tensor::<Train, 2>::random([m, k], Distribution::Normal(0.0, 0.05), &device);
    let x =
        Tensor::<Train, 2>::random([n, k], Distribution::Normal(0.0, 1.0), &device).require_grad();
    let r = Tensor::<Train, 2>::random([n, m], Distribution::Normal(0.0, 1.0), &device);
    let mut layer = BitLinearConfig::new(k, m, k)
        .with_trainable(true)
        .init::<Train>(&device);
    layer.latent = Some(Param::from_tensor(w.clone()));
    let loss = (layer.forward(x.clone(), ActQuant::Int8) * r.clone()).sum();
    let grads = loss.backward();
    let g_w = host(layer.latent.as_ref().unwrap().grad(&grads).unwrap());
    let g_x = host(x.grad(&grads).unwrap());

    // The float model L(V, u) = Σ (u · Vᵀ) ∘ r, differentiated numerically at V = ternary weights, u = int8 acts.
    let (wv, xv, rv) = (host(w.inner()), host(x.inner()), host(r.inner()));
    let (wq, xq) = (ternarize(&wv), quantize_rows(&xv, k));
    assert!(wq.contains(&0.0) && wq.iter().any(|&v| v != 0.0));
    let loss_at = |v: &[f64], u: &[f64]| {
        let mut l = 0.0;
        for i in 0..n {
            for j in 0..m {
                let y: f64 = (0..k).map(|c| u[i * k + c] * v[j * k + c]).sum();
                l += y * rv[i * m + j] as f64;
            }
        }
        l
    };
    let h = 1e-3;
    let numeric = |p: &[f64], i: usize, at: &dyn Fn(&[f64]) -> f64| {
        let (mut a, mut b) = (p.to_vec(), p.to_vec());
        a[i] += h;
        b[i] -= h;
        (at(&a) - at(&b)) / (2.0 * h)
    };
    for (i, &g) in g_w.iter().enumerate() {
        let fd = numeric(&wq, i, &|v| loss_at(v, &xq));
        assert!(
            (g as f64 - fd).abs() <= 1e-4 * fd.abs().max(1.0),
            "dW[{i}]: {g} vs {fd}"
        );
    }
    for (i, &g) in g_x.iter().enumerate() {
        let fd = numeric(&xq, i, &|u| loss_at(&wq, u));
        assert!(
            (g as f64 - fd).abs() <= 1e-4 * fd.abs().max(1.0),
            "dx[{i}]: {g} vs {fd}"
        );
    }
}

#[test]
fn a_frozen_layer_computes_the_training_forward() {
    let _rng = RNG.lock().unwrap_or_else(|e| e.into_inner());
    let device = Default::default();
    for act in [ActQuant::Int8, ActQuant::Float] {
        let layer = BitLinearConfig::new(64, 48, 64)
            .with_trainable(true)
            .init::<NdArray>(&device);
        let x = Tensor::<NdArray, 3>::random([2, 5, 64], Distribution::Normal(0.0, 1.0), &device);
        let trained = host(layer.forward(x.clone(), act).reshape([10, 48]));
        let frozen = layer.freeze();
        assert!(frozen.latent.is_none());
        let packed = host(frozen.forward(x, act).reshape([10, 48]));
        let peak = trained.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (a, b) in trained.iter().zip(&packed) {
            assert!((a - b).abs() <= 1e-5 * peak, "{act:?}: {a} vs {b}");
        }
    }
}

#[test]
fn a_tiny_bitnet_learns_a_sequence_and_freezes_to_the_same_predictions() {
    let _rng = RNG.lock().unwrap_or_else(|e| e.into_inner());
    let device = Default::default();
    let vocab = 32;
    let config = ModelConfig::new(64, 2, 4, 2, 128, vocab).with_context_length(64);
    let mut net = BitNet::<Train>::init(config, true, &device);
    // A fixed cycle through 12 tokens: next-token prediction is learnable from the previous token alone.
    let seq: Vec<u32> = (0..33).map(|i| ((i * 7) % 12) as u32).collect();
    let (inputs, targets) = (seq[..32].to_vec(), seq[1..].to_vec());
    let targets = Tensor::<Train, 1, Int>::from_data(
        TensorData::new(targets.iter().map(|&t| t as i64).collect(), [32]),
        &device,
    );
    let mut optim = AdamWConfig::new().with_weight_decay(0.0).init();
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let mut losses = Vec::new();
    for _ in 0..40 {
        let mut cache = net.new_cache(1, 32);
        let logits = net
            .forward(std::slice::from_ref(&inputs), &mut cache, ActQuant::Int8)
            .unwrap()
            .reshape([32, vocab]);
        let loss = loss_fn.forward(logits, targets.clone());
        losses.push(loss.clone().into_scalar());
        let grads = GradientsParams::from_grads(loss.backward(), &net.model);
        net.model = optim.step(3e-3, net.model.clone(), grads);
    }
    let (first, last) = (losses[0], *losses.last().unwrap());
    assert!(last < 0.3 * first, "loss {first} -> {last}");

    // The frozen model (packed ternary weights, the inference kernels) predicts the same next tokens.
    let frozen = net.freeze();
    let mut cache = frozen.new_cache(1, 32);
    let logits = host(
        frozen
            .forward(std::slice::from_ref(&inputs), &mut cache, ActQuant::Int8)
            .unwrap()
            .reshape([32, vocab]),
    );
    let predicted: Vec<u32> = logits
        .chunks(vocab)
        .map(|row| {
            (0..vocab)
                .max_by(|&a, &b| row[a].total_cmp(&row[b]))
                .unwrap() as u32
        })
        .collect();
    let correct = predicted
        .iter()
        .zip(&seq[1..])
        .filter(|(a, b)| a == b)
        .count();
    assert!(
        correct >= 28,
        "{correct}/32 next tokens right after freezing"
    );
}

fn latents(trainer: &Trainer<Train>) -> Vec<f32> {
    let block = &trainer.net.model.blocks[0];
    [&block.attn.wq, &block.ffn.down]
        .into_iter()
        .flat_map(|l| host(l.latent.as_ref().unwrap().val()))
        .chain(host(trainer.net.model.embedding.float(&Default::default())))
        .collect()
}

#[test]
fn the_seed_fixes_the_initial_weights() {
    let _rng = RNG.lock().unwrap_or_else(|e| e.into_inner());
    let device = Default::default();
    let config = |seed| TrainConfig::new(ModelConfig::new(64, 1, 4, 2, 128, 32)).with_seed(seed);
    let a = latents(&Trainer::<Train>::new(config(7), &device));
    let b = latents(&Trainer::<Train>::new(config(7), &device));
    let c = latents(&Trainer::<Train>::new(config(8), &device));
    assert_eq!(a, b);
    assert!(a.iter().zip(&c).filter(|(x, y)| x != y).count() > a.len() / 2);
}

#[test]
fn a_run_resumed_from_checkpoints_takes_the_same_steps() {
    let _rng = RNG.lock().unwrap_or_else(|e| e.into_inner());
    let device = Default::default();
    let tokens: Vec<u32> = (0..400).map(|i| ((i * 7 + i / 13) % 32) as u32).collect();
    // 8 steps: stage 2 (no weight decay, lower rate) starts at step 4.
    let config = TrainConfig::new(ModelConfig::new(64, 2, 4, 2, 128, 32).with_context_length(32))
        .with_steps(8)
        .with_warmup(2)
        .with_seq_len(16)
        .with_batch(2);
    let run = |trainer: &mut Trainer<Train>, until: usize| {
        let mut windows = Windows::new(&tokens, 16, config.seed);
        windows.skip(trainer.steps_done(), 2);
        while trainer.steps_done() < until {
            let (x, y) = windows.sample(2);
            trainer.step(&x, &y);
        }
    };
    let mut straight = Trainer::<Train>::new(config.clone(), &device);
    run(&mut straight, 8);

    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("checkpoint");
    let mut first = Trainer::<Train>::new(config.clone(), &device);
    run(&mut first, 3);
    first.save(&ckpt).unwrap();
    let mut second = Trainer::<Train>::resume(&ckpt, &device).unwrap();
    assert_eq!(second.steps_done(), 3);
    run(&mut second, 5);
    second.save(&ckpt).unwrap();
    let mut third = Trainer::<Train>::resume(&ckpt, &device).unwrap();
    run(&mut third, 8);
    assert_eq!(latents(&third), latents(&straight));

    std::fs::write(ckpt.join("step.txt"), "nine\n").unwrap();
    let err = Trainer::<Train>::resume(&ckpt, &device)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("step.txt") && err.contains("nine"), "{err}");
}
