//! The float output head `y = x · wᵀ` as a CubeCL kernel, f32 products and sums in the units: Burn's f32 matmul
//! runs on TF32 tensor cores on CUDA (cubek-matmul), ~1e-3 from the reference logits, and the float head is the
//! reference numerics. Rows and lanes as [`super::rows`] lays them out, each unit reading vectors of the row.

use burn::tensor::TensorMetadata;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::CubeRuntime;
use cubecl::prelude::*;

use super::output;
use super::rows::{launch, row_totals, LANES, ROWS};

#[cube(launch)]
fn float_rows<F: Float, N: Size>(
    x: &Tensor<Vector<F, N>>,
    w: &Tensor<Vector<F, N>>,
    y: &mut Tensor<F>,
    #[comptime] tokens: usize,
    #[comptime] plane: bool,
    #[define(F)] _dtype: StorageType,
) {
    let (m, n) = (y.shape(0), w.shape(0));
    let loads = w.shape(1) / w.vector_size();
    let lane = UNIT_POS_X as usize;
    let row = CUBE_POS_X as usize * ROWS + UNIT_POS_Y as usize;
    let first = CUBE_POS_Y as usize * tokens;
    let mut acc = Array::<F>::new(tokens);
    #[unroll]
    for t in 0..tokens {
        acc[t] = F::new(0.0);
    }
    if row < n {
        let mut j = lane;
        while j < loads {
            let weights = w[row * loads + j];
            #[unroll]
            for t in 0..tokens {
                if first + t < m {
                    let products = x[(first + t) * loads + j] * weights;
                    #[unroll]
                    for l in 0..N::value() {
                        acc[t] += products[l];
                    }
                }
            }
            j += LANES;
        }
    }
    row_totals::<F>(&mut acc, tokens, plane);
    if lane == 0 && row < n {
        #[unroll]
        for t in 0..tokens {
            if first + t < m {
                y[(first + t) * n + row] = acc[t];
            }
        }
    }
}

/// [`crate::TernaryBackend::float_matmul_nt`]: `y [m, n] = x [m, k] · w [n, k]ᵀ`.
pub(crate) fn float_matmul_nt<R: CubeRuntime>(x: CubeTensor<R>, w: CubeTensor<R>) -> CubeTensor<R> {
    let [x, w] = [x, w].map(into_contiguous);
    let (m, k, n) = (x.shape()[0], x.shape()[1], w.shape()[0]);
    assert_eq!(w.shape()[1], k, "x and w share their inner dimension");
    let y = output(&x, m, n);
    let vector = super::vector_width(k);
    let plan = launch(&y.client, &[n], m, k / vector);
    let dtype = x.dtype;
    float_rows::launch::<R>(
        &y.client,
        plan.count,
        plan.dim,
        vector,
        x.into_tensor_arg(),
        w.into_tensor_arg(),
        y.clone().into_tensor_arg(),
        plan.tokens,
        plan.plane,
        dtype.into(),
    );
    y
}
