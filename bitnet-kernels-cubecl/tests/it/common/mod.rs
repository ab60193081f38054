//! What the kernel tests share: a small deterministic generator (tests must not depend on a platform RNG).
#![allow(dead_code, unused_macros)]

/// A 64-bit linear congruential generator.
pub struct Lcg(pub u64);

impl Lcg {
    /// The next 31-bit value.
    pub fn next(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }

    /// -1, 0 or 1.
    pub fn trit(&mut self) -> i8 {
        (self.next() % 3) as i8 - 1
    }

    /// Uniform in [-1, 1].
    pub fn uniform(&mut self) -> f32 {
        self.next() as f32 / u32::MAX as f32 * 2.0 - 1.0
    }

    /// Heavy-tailed values so some tokens have outliers and others quantize to many zeros.
    pub fn heavy(&mut self) -> f32 {
        let u = self.uniform();
        if self.next().is_multiple_of(50) {
            u * 40.0
        } else {
            u
        }
    }
}

/// `n` rows of `k` random trits, packed as the kernels read them.
pub fn packed_trits(rng: &mut Lcg, n: usize, k: usize) -> Vec<u32> {
    let kw = bitnet_kernels_cubecl::packing::words_per_row(k);
    let mut words = vec![0u32; n * kw];
    for row in words.chunks_exact_mut(kw) {
        let trits: Vec<i8> = (0..k).map(|_| rng.trit()).collect();
        bitnet_kernels_cubecl::packing::pack_row(&trits, row);
    }
    words
}

/// `count` weight scales in [0.5, 1.5).
pub fn scales(rng: &mut Lcg, count: usize) -> Vec<f32> {
    (0..count).map(|_| 0.5 + rng.uniform().abs()).collect()
}

/// RMSNorm of each row of `x` evaluated in f64 (`x / sqrt(mean(x²) + eps) · weight`), rounded to f32.
pub fn rms_norm_f64(x: &[f32], weight: &[f32], eps: f64) -> Vec<f32> {
    x.chunks_exact(weight.len())
        .flat_map(|row| {
            let ms = row.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / row.len() as f64;
            let inv = 1.0 / (ms + eps).sqrt();
            row.iter()
                .zip(weight)
                .map(move |(&v, &w)| (v as f64 * inv * w as f64) as f32)
        })
        .collect()
}

/// The default wgpu device (a Vulkan/Metal adapter, lavapipe included), or `None` after saying why outside CI.
#[cfg(feature = "wgpu")]
pub fn wgpu_device() -> Option<burn::backend::wgpu::WgpuDevice> {
    use bitnet_kernels_cubecl::device;
    device::or_skip("wgpu kernel tests", device::wgpu_available())
}

/// The first CUDA device, or `None` after saying why outside CI.
#[cfg(feature = "cuda")]
pub fn cuda_device() -> Option<burn::backend::cuda::CudaDevice> {
    use bitnet_kernels_cubecl::device;
    device::or_skip("CUDA kernel tests", device::cuda_available())
}

/// A module `on` with one test per backend compiled in, each calling `$check::<Backend>(&device, "name")`:
/// `on::ndarray` always, `on::wgpu` and `on::cuda` with their features (skipping with a message without a
/// device).
macro_rules! backend_tests {
    ($check:ident) => {
        mod on {
            #[test]
            fn ndarray() {
                super::$check::<burn::backend::NdArray>(&Default::default(), "ndarray");
            }

            #[cfg(feature = "wgpu")]
            #[test]
            fn wgpu() {
                if let Some(d) = crate::common::wgpu_device() {
                    super::$check::<burn::backend::Wgpu>(&d, "wgpu");
                }
            }

            #[cfg(feature = "cuda")]
            #[test]
            fn cuda() {
                if let Some(d) = crate::common::cuda_device() {
                    super::$check::<burn::backend::Cuda>(&d, "cuda");
                }
            }
        }
    };
}

/// `got` equals `want` bit for bit; the message counts the outputs that differ and names the first.
pub fn assert_same_bits(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let differ = |(a, b): (&f32, &f32)| a.to_bits() != b.to_bits();
    let count = got.iter().zip(want).filter(|&p| differ(p)).count();
    let first = got.iter().zip(want).position(differ);
    assert_eq!(
        count, 0,
        "{what}: {count} outputs differ, the first at {first:?}"
    );
}

/// `got` equals `want` to `1e-5 · (1 + |want|)` element by element: a few f32 ulp of values of order one (a
/// couple of f32 products and sums against an f64 evaluation).
pub fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
            "{what}: element {i}: {g} vs {w}"
        );
    }
}
