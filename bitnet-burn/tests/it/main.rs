//! bitnet-burn layers on their own: BitLinear against its reference and quantization-aware training.
//! One test binary, one module per topic.

mod bit_linear;
mod training;
