//! Train → export → convert → load: a small BitNet trained with QAT on text through a BPE vocabulary trained here,
//! saved as a transformers checkpoint, converted to GGUF and loaded by the inference path, predicts what the
//! trained model predicts.

use bitnet_burn::convert::{convert_checkpoint, ConvertOptions};
use bitnet_burn::export::save_checkpoint;
use bitnet_burn::tokenizer::train_byte_level_bpe;
use bitnet_burn::train::{TrainConfig, Trainer, Windows};
use bitnet_burn::{load, ActQuant, BitNetConfig};
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
    let model = BitNetConfig::new(256, 2, 4, 2, 512, vocab)
        .with_context_length(128)
        .with_relu2(false);
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
    let frozen = trainer.inference_net().freeze();
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
        let net = load::<NdArray>(&out, &device).unwrap();
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
        let tok = bitnet_burn::tokenizer::Tokenizer::from_gguf(
            &bitnet_gguf::GgufFile::open(&out).unwrap(),
        )
        .unwrap();
        assert_eq!(
            tok.encode(&text[..300], false).unwrap(),
            tokenizer.encode(&text[..300], false).unwrap()
        );
    }
}
