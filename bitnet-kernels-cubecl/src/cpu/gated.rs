//! The gated FFN activation `act(gate) · up` on the CPU, split across the kernel pool.

use std::mem::MaybeUninit;

use super::par::{par_bands, SharedOut};
use crate::Activation;

/// Elements per band boundary (keeps bands on whole cache lines of both inputs).
const ALIGN: usize = 1024;

/// `act(gate[i]) · up[i]` for equal-length `gate` and `up`, evaluated as the Burn-ops definition does
/// (`(relu(g)²) · up`, `(g · sigmoid(g)) · up`).
pub fn gated(gate: &[f32], up: &[f32], act: Activation) -> Vec<f32> {
    assert_eq!(gate.len(), up.len(), "gate and up");
    let mut y = Vec::new();
    let out = SharedOut::output(&mut y, gate.len());
    par_bands(gate.len(), ALIGN, |band| {
        // SAFETY: the band's elements, which no other band writes.
        let y = unsafe { out.uninit(band.start, band.len()) };
        let (g, u) = (&gate[band.clone()], &up[band]);
        match act {
            Activation::Relu2 => {
                for ((y, &g), &u) in y.iter_mut().zip(g).zip(u) {
                    let r = g.max(0.0);
                    *y = MaybeUninit::new(r * r * u);
                }
            }
            Activation::Silu => {
                for ((y, &g), &u) in y.iter_mut().zip(g).zip(u) {
                    *y = MaybeUninit::new(g / (1.0 + (-g).exp()) * u);
                }
            }
        }
    });
    // SAFETY: the bands cover every element and write each.
    unsafe { y.set_len(gate.len()) };
    y
}
