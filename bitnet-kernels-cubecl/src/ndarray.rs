//! The CPU (burn-ndarray) side of the ternary op: runs directly on the packed words.

use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{TensorData, TensorMetadata};
use burn_ndarray::{NdArray, NdArrayTensor};

use crate::reference::{self, TernaryShape};
use crate::TernaryBackend;

fn f32_vec(t: &NdArrayTensor, what: &str) -> (Vec<usize>, Vec<f32>) {
    match t {
        NdArrayTensor::F32(s) => {
            let v = s.view();
            (v.shape().to_vec(), v.iter().copied().collect())
        }
        other => panic!(
            "ternary_matmul: {what} must be f32, found {:?}",
            other.dtype()
        ),
    }
}

impl TernaryBackend for NdArray<f32> {
    fn ternary_matmul(
        x: FloatTensor<Self>,
        w: IntTensor<Self>,
        scales: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let (xs, xv) = f32_vec(&x, "x");
        let (ss, sv) = f32_vec(&scales, "scales");
        let NdArrayTensor::U32(ws) = &w else {
            panic!(
                "ternary_matmul: packed weights must be u32, found {:?}",
                w.dtype()
            )
        };
        let wview = ws.view();
        let wv: Vec<u32> = match wview.as_slice() {
            Some(s) => s.to_vec(),
            None => wview.iter().copied().collect(),
        };
        let (m, k) = (xs[0], xs[1]);
        let shape = TernaryShape {
            n: ss[0],
            k,
            block: k.div_ceil(ss[1]),
        };
        let y = reference::ternary_matmul(&xv, m, &wv, &sv, shape);
        NdArrayTensor::from_data(TensorData::new(y, [m, shape.n]))
    }
}
