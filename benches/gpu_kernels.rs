//! GPU kernel throughput on the 2B-4T shapes, against the device-to-device copy rate measured by the same
//! harness: `cargo bench --bench gpu_kernels --features cuda` (or `wgpu`). GEMV weights cycle through more
//! matrices than a GPU's L2 holds, so the rates are DRAM-bound as in a real decode step. Every iteration waits
//! for the device (`Backend::sync`). Each benchmark allocates its tensors when it runs, so a filter (e.g.
//! `-- decode_attention`) also runs on devices whose buffers cannot hold the others' (lavapipe's 256 MiB).

#[cfg(any(feature = "cuda", feature = "wgpu"))]
mod gpu {
    use std::hint::black_box;

    use bitnet_kernels_cubecl::packing::{i8_words_per_row, words_per_row};
    use bitnet_kernels_cubecl::{ops, CacheType, TernaryBackend};
    use burn::tensor::backend::Backend;
    use burn::tensor::{DType, Device, Distribution, Int, Tensor, TensorData};
    use criterion::{Criterion, Throughput};

    #[cfg(feature = "cuda")]
    type Gpu = burn::backend::Cuda;
    #[cfg(all(feature = "wgpu", not(feature = "cuda")))]
    type Gpu = burn::backend::Wgpu;

    /// Bytes of weights cycled through per GEMV benchmark (above the 50 MB L2 of an H100).
    const WORKING_SET: usize = 256 << 20;

    fn device() -> Device<Gpu> {
        Default::default()
    }

    fn sync() {
        Gpu::sync(&device()).expect("device sync");
    }

    /// Random packed words `[n, words]` (every bit pattern is a valid weight of both layouts) with unit scales
    /// `[n, 1]`, laid out as a loaded model's ([`ops::dense_weights`]).
    fn layer(n: usize, words: usize, seed: u64) -> (Tensor<Gpu, 2, Int>, Tensor<Gpu, 2>) {
        let mut s = seed;
        let data: Vec<u32> = (0..n * words)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (s >> 32) as u32
            })
            .collect();
        ops::dense_weights((
            Tensor::from_data(TensorData::new(data, [n, words]), (&device(), DType::U32)),
            Tensor::ones([n, 1], &device()),
        ))
    }

    fn activations(m: usize, k: usize) -> Tensor<Gpu, 2> {
        Tensor::random([m, k], Distribution::Uniform(-1.0, 1.0), &device())
    }

    /// Reads and writes `WORKING_SET` bytes: the bound every memory-bound kernel is held against.
    pub fn copy(c: &mut Criterion) {
        let mut g = c.benchmark_group("device_copy");
        g.throughput(Throughput::Bytes(2 * WORKING_SET as u64));
        g.bench_function("f32_add_scalar", |b| {
            let x = Tensor::<Gpu, 1>::zeros([WORKING_SET / 4], &device());
            b.iter(|| {
                black_box(x.clone().add_scalar(1.0));
                sync();
            })
        });
    }

    /// The int8 BitLinear op for one token (decode) on the FFN shapes, and for 128 tokens (prefill, counted in
    /// multiply-adds).
    pub fn ternary(c: &mut Criterion) {
        for (n, k) in [(6912, 2560), (2560, 6912)] {
            let kw = words_per_row(k);
            let copies = WORKING_SET / (4 * n * kw) + 1;
            let mut g = c.benchmark_group(format!("gpu_ternary_{n}x{k}"));
            for m in [1, 128] {
                g.throughput(if m == 1 {
                    Throughput::Bytes(4 * (n * kw) as u64)
                } else {
                    Throughput::Elements((m * n * k) as u64)
                });
                g.bench_function(format!("tokens{m}"), |b| {
                    let layers: Vec<_> = (0..copies).map(|i| layer(n, kw, i as u64)).collect();
                    let x = activations(m, k);
                    let mut i = 0;
                    b.iter(|| {
                        i = (i + 1) % copies;
                        black_box(ops::ternary_matmul_i8(x.clone(), layers[i].clone()));
                        sync();
                    })
                });
            }
        }
    }

    /// The int8 output head of 2B-4T for one token: 0.33 GB of packed weights, larger than any L2.
    pub fn int8_head(c: &mut Criterion) {
        let (n, k) = (128_256, 2560);
        let mut g = c.benchmark_group(format!("gpu_int8_head_{n}x{k}"));
        g.throughput(Throughput::Bytes((n * k) as u64));
        g.bench_function("tokens1", |b| {
            let (w, scales) = layer(n, i8_words_per_row(k), 9);
            let x = activations(1, k);
            b.iter(|| {
                black_box(ops::int8_matmul(x.clone(), w.clone(), scales.clone()));
                sync();
            })
        });
    }

    /// One layer's decode attention on 2B-4T (20 query heads over 5 KV heads of 128) after `len` positions, from
    /// each cache type: a long context is where one cube per query head leaves most of a GPU idle.
    pub fn decode_attention(c: &mut Criterion) {
        let (heads, kv_heads, d, max_len) = (20, 5, 128, 4096);
        for cache in [CacheType::F32, CacheType::F16, CacheType::Q8_0] {
            let [k, v] =
                [0, 1].map(|_| Gpu::kv_cache_zeros([1, kv_heads, max_len, d], cache, &device()));
            let q = Tensor::<Gpu, 4>::random([1, heads, 1, d], Distribution::Default, &device());
            let mut g = c.benchmark_group(format!(
                "gpu_decode_attention_{heads}x{kv_heads}x{d}_{cache:?}"
            ));
            for len in [512, 4000] {
                // A q8_0 row here is d bytes and an f16 scale in a 32-bit word per 32 values (`cube/q8.rs`).
                let row = match cache {
                    CacheType::F32 => 4 * d,
                    CacheType::F16 => 2 * d,
                    CacheType::Q8_0 => d + d / 8,
                };
                let bytes = row * len * kv_heads * 2;
                g.throughput(Throughput::Bytes(bytes as u64));
                g.bench_function(format!("len{len}"), |b| {
                    b.iter(|| {
                        let q = q.clone().into_primitive().tensor();
                        black_box(Gpu::cached_attention(q, k.clone(), v.clone(), len));
                        sync();
                    })
                });
            }
        }
    }
}

#[cfg(any(feature = "cuda", feature = "wgpu"))]
criterion::criterion_group!(
    benches,
    gpu::copy,
    gpu::ternary,
    gpu::int8_head,
    gpu::decode_attention
);
#[cfg(any(feature = "cuda", feature = "wgpu"))]
criterion::criterion_main!(benches);

#[cfg(not(any(feature = "cuda", feature = "wgpu")))]
fn main() {
    eprintln!("gpu_kernels needs a GPU backend: cargo bench --bench gpu_kernels --features cuda (or wgpu)");
}
