//! The kernel tests: every op on every backend compiled in (ndarray always; wgpu, CUDA by feature) against
//! independent references. One test binary (each links all of Burn), one module per op.

#[macro_use]
mod common;

mod attention;
mod attention_step;
mod bit_linears;
mod cpu_kernels;
mod float_head;
mod gated;
mod int8_head;
mod rms_norm;
mod rope;
mod ternary_matmul;
