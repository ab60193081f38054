//! bitnet-gguf on hand-made and mutated files: codecs, adversarial inputs, property-based mutations and the
//! streaming writer. One test binary, one module per topic.

mod adversarial;
mod codecs;
mod mutations;
mod streaming_writer;
