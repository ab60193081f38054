//! Train → export → convert → load: a small BitNet trained with QAT on text through a BPE vocabulary trained here,
//! saved as a transformers checkpoint, converted to GGUF and loaded by the inference path, predicts what the
//! trained model predicts; and the same training steps on wgpu as on the CPU.

use bitnet_burn::io::convert::{convert_checkpoint, ConvertOptions};
use bitnet_burn::io::export::save_checkpoint;
use bitnet_burn::text::tokenizer::train_byte_level_bpe;
use bitnet_burn::train::{TrainConfig, Trainer, Windows};
use bitnet_burn::{ActQuant, Activation, CacheType, ModelConfig};
use bitnet_gguf::GgmlType;
use burn::backend::{Autodiff, NdArray};
use burn::tensor::Tensor;

/// A small corpus with structure a 2-layer model picks up in a few dozen steps.
fn corpus() -> String {
    let names = ["ROMEO", "JULIET", "NURSE", "FRIAR"];
    let lines = [
        "What light through yonder window breaks?",
        "Good night, good night! Parting is such sweet sorrow.",
        "O, speak again, bright angel!",
        "These violent delights have violent ends.",
    ];
    (0..200)
        .map(|i| format!("{}:\n{}\n\n", names[i % 4], lines[(i * 3) % 4]))
        .collect()
}

fn logits<B: bitnet_burn::TernaryBackend>(net: &bitnet_burn::BitNet<B>, ids: &[u32]) -> Vec<f32> {
    let mut cache = net.new_cache(1, ids.len());
    let t: Tensor<B, 3> = net
        .forward(&[ids.to_vec()], &mut cache, ActQuant::Int8)
        .unwrap();
    t.into_data().convert::<f32>().to_vec().unwrap()
}

#[test]
fn a_trained_model_exports_converts_and_predicts_the_same() {
    let tmp = tempfile::tempdir().unwrap();
    let text = corpus();
    let tokenizer =
        train_byte_level_bpe(&[&text], 320, &tmp.path().join("tokenizer.json")).unwrap();
    let ids = tokenizer.encode(&text, false).unwrap();
    let vocab = tokenizer.vocab_size();
    assert!(
        vocab > 258 && ids.len() < text.len() / 2,
        "merges were learned"
    );

    // Widths are multiples of 256, as TQ2_0 blocks need.
    let model = ModelConfig::new(256, 2, 4, 2, 512, vocab)
        .with_context_length(128)
        .with_activation(Activation::Silu);
    let config = TrainConfig::new(model)
        .with_steps(60)
        .with_seq_len(32)
        .with_batch(4)
        .with_warmup(5);
    let device = Default::default();
    let mut trainer = Trainer::<Autodiff<NdArray>>::new(config.clone(), &device);
    let mut windows = Windows::new(&ids, 32, 1);
    let mut losses = Vec::new();
    for _ in 0..config.steps {
        let (x, y) = windows.sample(4);
        losses.push(trainer.step(&x, &y).0);
    }
    let head: f64 = losses[..5].iter().sum::<f64>() / 5.0;
    let tail: f64 = losses[losses.len() - 5..].iter().sum::<f64>() / 5.0;
    assert!(tail < 0.6 * head, "loss {head:.3} -> {tail:.3}");

    let ckpt = tmp.path().join("ckpt");
    save_checkpoint(&trainer.net, &tmp.path().join("tokenizer.json"), &ckpt).unwrap();
    // Frozen on the inner backend: the same CPU kernels the loaded GGUF runs on (the Autodiff composition can round
    // an int8 activation the other way at a tie).
    let mut frozen = trainer.inference_net().freeze();
    frozen.set_cache_type(CacheType::F32); // as `load_float` below
    let probe = &ids[..24];
    let expected = logits(&frozen, probe);
    let peak = expected.iter().fold(0f32, |m, v| m.max(v.abs()));
    for (ty, tolerance) in [
        (GgmlType::I2S, 1e-4),
        (GgmlType::TQ2_0, 2e-2),
        (GgmlType::F32, 1e-4),
    ] {
        let out = tmp.path().join(format!("{ty}.gguf"));
        convert_checkpoint(
            &ckpt,
            &out,
            ConvertOptions {
                linear: ty,
                embedding: GgmlType::F32,
            },
            |_, _| {},
        )
        .unwrap();
        let net = crate::common::load_float::<NdArray>(&out, &device);
        let got = logits(&net, probe);
        let worst = got
            .iter()
            .zip(&expected)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        // I2_S and F32 keep the f32 scale: only summation order differs. TQ2_0 rounds each scale to f16.
        assert!(
            worst <= tolerance * peak,
            "{ty}: max |Δlogit| {worst} (peak {peak})"
        );
        let tok = bitnet_burn::text::tokenizer::Tokenizer::from_gguf(
            &bitnet_gguf::GgufFile::open(&out).unwrap(),
        )
        .unwrap();
        assert_eq!(
            tok.encode(&text[..300], true).unwrap(),
            tokenizer.encode(&text[..300], true).unwrap()
        );
        // The trained tokenizer has <|begin_of_text|> but no post-processor: neither side prepends it.
        assert!(tok.bos_id().is_some() && !tok.adds_bos() && !tokenizer.adds_bos());
    }
}

/// Latent weights of every BitLinear, then the embedding.
#[cfg(feature = "wgpu")]
fn weights<B: burn::tensor::backend::AutodiffBackend + bitnet_burn::TernaryBackend>(
    t: &Trainer<B>,
) -> Vec<f32>
where
    B::InnerBackend: bitnet_burn::TernaryBackend,
{
    let host = |t: Tensor<B, 2>| -> Vec<f32> { t.into_data().convert::<f32>().to_vec().unwrap() };
    let mut out = Vec::new();
    for b in &t.net.model.blocks {
        for l in [
            &b.attn.wq,
            &b.attn.wk,
            &b.attn.wv,
            &b.attn.wo,
            &b.ffn.gate,
            &b.ffn.up,
            &b.ffn.down,
        ] {
            out.extend(host(l.latent.as_ref().unwrap().val()));
        }
    }
    out.extend(host(t.net.model.embedding.float(t.net.device())));
    out
}

#[cfg(feature = "wgpu")]
#[test]
fn training_steps_on_wgpu_follow_the_cpu() {
    use burn::backend::Wgpu;
    let Some(gpu) = crate::common::wgpu_device_or_skip("training_steps_on_wgpu_follow_the_cpu")
    else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = tmp.path().join("start");
    let config = TrainConfig::new(ModelConfig::new(64, 2, 4, 2, 128, 48).with_context_length(32))
        .with_steps(6)
        .with_warmup(2)
        .with_seq_len(16)
        .with_batch(2);
    let mut cpu = Trainer::<Autodiff<NdArray>>::new(config.clone(), &Default::default());
    cpu.save(&ckpt).unwrap();
    // The same initial weights, uploaded from the checkpoint.
    let mut gpu = Trainer::<Autodiff<Wgpu>>::resume(&ckpt, &gpu).unwrap();
    let start = weights(&cpu);
    assert_eq!(weights(&gpu), start);

    let tokens: Vec<u32> = (0..300).map(|i| ((i * 5 + i / 7) % 48) as u32).collect();
    let mut windows = Windows::new(&tokens, 16, 3);
    for step in 0..config.steps {
        let (x, y) = windows.sample(2);
        let (a, b) = (cpu.step(&x, &y).0, gpu.step(&x, &y).0);
        assert!(
            (a - b).abs() <= 1e-3 * a.abs(),
            "step {step}: loss {a} (cpu) vs {b} (wgpu)"
        );
    }
    // Adam moves every weight by about the learning rate per step; the two runs move them alike.
    let (c, g) = (weights(&cpu), weights(&gpu));
    let moved: f32 = c.iter().zip(&start).map(|(a, b)| (a - b).abs()).sum();
    let apart: f32 = c.iter().zip(&g).map(|(a, b)| (a - b).abs()).sum();
    assert!(
        apart <= 0.01 * moved,
        "cpu and wgpu weights {apart} apart after moving {moved}"
    );
}
