//! BitLinear's activation numerics against host computations: llama.cpp's per-256-column-block int8 (Q8_K) and
//! BitNet's per-token int8.

use bitnet_burn::nn::BitLinear;
use bitnet_burn::ActQuant;
use bitnet_kernels_cubecl::packing::{pack_row, words_per_row};
use burn::backend::NdArray;
use burn::tensor::{Tensor, TensorData};

/// `x` rounded to int8 levels with one absmax scale per `block` columns, as llama.cpp's `quantize_row_q8_K` (block
/// 256) and BitNet's per-token quantization (block = row) do.
fn fake_quantize(x: &[f32], block: usize) -> Vec<f32> {
    x.chunks(block)
        .flat_map(|b| {
            let s = 127.0 / b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-5);
            b.iter()
                .map(move |&v| (v * s).round_ties_even().clamp(-128.0, 127.0) / s)
        })
        .collect()
}

#[test]
fn q8k_quantizes_each_256_column_block_on_its_own() {
    let (n, k, m) = (3, 512, 5);
    // The second block of each row is 20× smaller: per-token scales lose most of its precision, per-block ones don't.
    let x: Vec<f32> = (0..n * k)
        .map(|i| {
            let v = ((i * 7919) % 1000) as f32 / 500.0 - 1.0;
            if i % k >= 256 {
                v / 20.0
            } else {
                v
            }
        })
        .collect();
    let trits: Vec<i8> = (0..m * k).map(|i| ((i * 31) % 3) as i8 - 1).collect();
    let scales = [0.5f32, 1.0, 1.5, 2.0, 2.5];
    let mut words = vec![0u32; m * words_per_row(k)];
    for (row, t) in trits.chunks(k).enumerate() {
        pack_row(
            t,
            &mut words[row * words_per_row(k)..(row + 1) * words_per_row(k)],
        );
    }
    let device = Default::default();
    let layer = BitLinear::<NdArray>::from_packed(words, scales.to_vec(), m, 1, &device);
    let input = Tensor::<NdArray, 2>::from_data(TensorData::new(x.clone(), [n, k]), &device);
    let run = |act| -> Vec<f32> {
        layer
            .forward(input.clone(), act)
            .into_data()
            .to_vec()
            .unwrap()
    };
    let expect = |block| -> Vec<f32> {
        let xq = fake_quantize(&x, block);
        (0..n * m)
            .map(|i| {
                let (r, o) = (i / m, i % m);
                let dot: f64 = (0..k)
                    .map(|c| xq[r * k + c] as f64 * trits[o * k + c] as f64)
                    .sum();
                (dot * scales[o] as f64) as f32
            })
            .collect()
    };
    for (act, block) in [(ActQuant::Q8K, 256), (ActQuant::Int8, k)] {
        let (got, want) = (run(act), expect(block));
        for (g, w) in got.iter().zip(&want) {
            assert!(
                (g - w).abs() <= 1e-5 * w.abs().max(1.0),
                "{act:?}: {g} vs {w}"
            );
        }
    }
    let (q8k, int8) = (expect(256), expect(k));
    assert!(
        q8k.iter().zip(&int8).any(|(a, b)| (a - b).abs() > 1e-3),
        "the input tells the two apart"
    );
}
