//! The int8 output head as a CubeCL kernel: weights stay packed 4 per `u32` on the device (a quarter of the
//! f32 bytes, and never expanded), activations arrive quantized per token, and each row's dot product is
//! accumulated in `i32`, so the integers equal the CPU kernels' exactly.

use burn::tensor::TensorMetadata;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::CubeRuntime;
use cubecl::prelude::*;

use super::output;
use super::rows::{launch, row_totals, LANES, ROWS};
use crate::packing::I8_PER_WORD;

#[cube(launch)]
fn int8_rows<F: Float, N: Size, L: Size>(
    q: &Tensor<Vector<F, N>>,
    s: &Tensor<F>,
    w: &Tensor<Vector<u32, L>>,
    scales: &Tensor<F>,
    y: &mut Tensor<F>,
    #[comptime] tokens: usize,
    #[comptime] plane: bool,
    #[define(F)] _dtype: StorageType,
) {
    let (m, n, kw) = (y.shape(0), w.shape(0), w.shape(1));
    let words = w.vector_size();
    let loads = kw / words;
    let lane = UNIT_POS_X as usize;
    let row = CUBE_POS_X as usize * ROWS + UNIT_POS_Y as usize;
    let first = CUBE_POS_Y as usize * tokens;
    let mut acc = Array::<i32>::new(tokens);
    #[unroll]
    for t in 0..tokens {
        acc[t] = 0i32;
    }
    if row < n {
        let mut shifts = Vector::<u32, N>::new(0u32);
        #[unroll]
        for b in 0..I8_PER_WORD {
            shifts[b] = comptime!(8 * b) as u32;
        }
        let mut j = lane;
        while j < loads {
            let packed = w[row * loads + j];
            #[unroll]
            for u in 0..words {
                let col = j * words + u;
                let bytes =
                    (Vector::<u32, N>::new(packed[u]) >> shifts) & Vector::<u32, N>::new(255u32);
                // Two's complement bytes to i32 without a sign-changing cast: (b ^ 128) - 128.
                let values = Vector::<i32, N>::cast_from(bytes ^ Vector::<u32, N>::new(128u32))
                    - Vector::<i32, N>::new(128i32);
                #[unroll]
                for t in 0..tokens {
                    if first + t < m {
                        let products =
                            Vector::<i32, N>::cast_from(q[(first + t) * kw + col]) * values;
                        #[unroll]
                        for b in 0..I8_PER_WORD {
                            acc[t] += products[b];
                        }
                    }
                }
            }
            j += LANES;
        }
    }
    row_totals::<i32>(&mut acc, tokens, plane);
    if lane == 0 && row < n {
        #[unroll]
        for t in 0..tokens {
            if first + t < m {
                let dot = F::cast_from(acc[t]);
                y[(first + t) * n + row] = dot * scales[row] / s[first + t];
            }
        }
    }
}

/// `y [m, n] = (q [m, k] · wᵀ) ⊙ scales[n] / s[m]` for activations `q` quantized to integer-valued floats with
/// per-token scales `s [m, 1]`, their rows padded with zeros to the packed width (`4 · words` columns), and
/// packed int8 weights `w [n, words]` with row scales `scales [n, 1]`.
pub(crate) fn int8_matmul<R: CubeRuntime>(
    q: CubeTensor<R>,
    s: CubeTensor<R>,
    w: CubeTensor<R>,
    scales: CubeTensor<R>,
) -> CubeTensor<R> {
    let [q, s, w, scales] = [q, s, w, scales].map(into_contiguous);
    let (m, n, kw) = (q.shape()[0], w.shape()[0], w.shape()[1]);
    assert_eq!(
        q.shape()[1],
        kw * I8_PER_WORD,
        "activations padded to the packed width"
    );
    let y = output(&q, m, n);
    let dtype = q.dtype;
    let rows = launch(&y.client, &[n], m, kw);
    int8_rows::launch::<R>(
        &y.client,
        rows.count,
        rows.dim,
        I8_PER_WORD,
        rows.words,
        q.into_tensor_arg(),
        s.into_tensor_arg(),
        w.into_tensor_arg(),
        scales.into_tensor_arg(),
        y.clone().into_tensor_arg(),
        rows.tokens,
        rows.plane,
        dtype.into(),
    );
    y
}
