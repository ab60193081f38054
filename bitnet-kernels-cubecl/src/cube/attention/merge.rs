//! The merge of a query row's key splits: each split's output row, weighted by `exp(its maximum - the row's)`,
//! summed and divided by the weighted sum of the splits' softmax sums (the online softmax's step, once).

use cubecl::prelude::*;

use super::{spill, unturned, LOWEST, UNITS};

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub(super) fn merge_splits<F: Float, N: Size>(
    partial: &Tensor<Vector<F, N>>,
    stats: &Tensor<F>,
    out: &mut Tensor<Vector<F, N>>,
    splits: usize,
    v_chunk: usize,
    v_scale: f32,
    #[comptime] width: usize,
    #[comptime] vectors: usize,
    #[comptime] quantized: bool,
    #[define(F)] _dtype: StorageType,
) {
    let (seq, heads) = (out.shape(1), out.shape(2));
    let query = CUBE_POS_X as usize;
    let (i, head, batch) = (query % seq, (query / seq) % heads, query / (seq * heads));
    let first = query * splits;
    let mut max = F::new(LOWEST);
    for s in 0..splits {
        max = F::max(max, stats[(first + s) * 2]);
    }
    let mut total = F::new(0.0);
    for s in 0..splits {
        total += F::exp(stats[(first + s) * 2] - max) * stats[(first + s) * 2 + 1];
    }
    let row = ((batch * seq + i) * heads + head) * vectors;
    let mut turned = SharedMemory::<f32>::new(comptime!(if quantized { width } else { 1 }));
    let mut j = UNIT_POS_X as usize;
    while j < vectors {
        let mut y = Vector::<F, N>::new(F::new(0.0));
        for s in 0..splits {
            let weight = F::exp(stats[(first + s) * 2] - max) / total;
            y += partial[(first + s) * vectors + j] * Vector::<F, N>::new(weight);
        }
        if comptime!(quantized) {
            spill::<F, N>(&mut turned, j, y);
        } else {
            out[row + j] = y;
        }
        j += UNITS;
    }
    if comptime!(quantized) {
        unturned::<F, N>(&mut turned, out, row, v_chunk, v_scale, width, vectors);
    }
}
