//! Any byte string: opening, config extraction, decoding every tensor, and rewriting must not panic.
#![no_main]

use bitnet_gguf::{GgufFile, GgufWriter, ModelConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(file) = GgufFile::from_bytes(data.to_vec()) else { return };
    let _ = ModelConfig::from_gguf(&file);
    for t in file.tensors() {
        if t.n_elements() <= 1 << 20 {
            let _ = file.dequantize(t);
        }
    }
    if let Ok(w) = GgufWriter::from_file(&file) {
        let mut out = Vec::new();
        w.write_to(&mut out).expect("writing to memory");
    }
});
