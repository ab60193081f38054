//! Model-level helpers: reference logits, sequences, comparisons, and the backends the tests run on.

use std::path::Path;

use bitnet_burn::{ActQuant, BitNet, TernaryBackend};

use super::read_npy;

/// The fixture's token sequences: `seq1`, `seq16`, `seq64`.
pub fn sequence(dir: &Path, name: &str) -> Vec<u32> {
    let v: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join("bitnet-tiny-h256/sequences.json")).unwrap(),
    )
    .unwrap();
    v[name]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// Reference logits `[positions, vocab]` (`file` like `logits_seq16_all`).
pub fn reference(dir: &Path, variant: &str, file: &str) -> Vec<Vec<f32>> {
    let (shape, v) = read_npy(&dir.join(format!("bitnet-tiny-h256/refs/{variant}/{file}.npy")));
    let vocab = *shape.last().unwrap() as usize;
    v.chunks(vocab).map(<[f32]>::to_vec).collect()
}

/// A reference's result.json.
pub fn result_json(dir: &Path, variant: &str) -> serde_json::Value {
    serde_json::from_slice(
        &std::fs::read(dir.join(format!("bitnet-tiny-h256/refs/{variant}/result.json"))).unwrap(),
    )
    .unwrap()
}

/// Logits of every position of `tokens`, in one batched prefill.
pub fn logits<B: TernaryBackend>(
    model: &BitNet<B>,
    tokens: &[u32],
    act: ActQuant,
) -> Vec<Vec<f32>> {
    let mut cache = model.new_cache(1, tokens.len());
    let out = model.forward(&[tokens.to_vec()], &mut cache, act).unwrap();
    let v: Vec<f32> = out.into_data().convert::<f32>().to_vec().unwrap();
    v.chunks(model.config.vocab_size)
        .map(<[f32]>::to_vec)
        .collect()
}

/// Largest absolute difference.
pub fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        // A NaN on either side is an infinite difference (`f32::max` would skip it).
        .map(|(x, y)| (x - y).abs())
        .fold(
            0.0,
            |m, d| if d.is_nan() { f32::INFINITY } else { m.max(d) },
        )
}

/// Root-mean-square difference.
pub fn rms(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    (a.iter()
        .zip(b)
        .map(|(x, y)| ((x - y) as f64).powi(2))
        .sum::<f64>()
        / a.len() as f64)
        .sqrt() as f32
}

pub use bitnet_burn::text::sampling::argmax;

/// Largest minus second largest value.
pub fn margin(v: &[f32]) -> f32 {
    let top = argmax(v) as usize;
    v[top]
        - v.iter()
            .enumerate()
            .filter(|&(i, _)| i != top)
            .map(|(_, &x)| x)
            .fold(f32::MIN, f32::max)
}
