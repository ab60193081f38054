//! Property tests: random byte mutations and truncations of real fixture files never panic; whatever still
//! opens decodes without panicking, and every accepted tensor lies inside the file.

use bitnet_gguf::{GgufFile, ModelConfig};
use proptest::prelude::*;

fn fixture(name: &str) -> Option<Vec<u8>> {
    // The crate sits one level below the repository, the fixtures beside the repository. Read at run time:
    // a test binary reused from a shared target directory may have been built from another checkout.
    let crate_dir =
        std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR");
    let p = std::path::Path::new(&crate_dir)
        .join("../../shared/fixtures/bitnet-tiny-h256/gguf")
        .join(name);
    let bytes = std::fs::read(&p).ok();
    if bytes.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{} is missing in CI",
            p.display()
        );
        eprintln!("SKIPPED mutation tests: {} not found", p.display());
    }
    bytes
}

/// The first 64 KiB hold the header and metadata (the tokenizer); mutations there exercise the parser.
fn check(bytes: Vec<u8>) {
    let len = bytes.len() as u64;
    if let Ok(f) = GgufFile::from_bytes(bytes) {
        let _ = ModelConfig::from_gguf(&f);
        for t in f.tensors() {
            assert!(f.data_offset() + t.offset + t.size <= len);
            let _ = f.dequantize(t);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn mutated_headers_never_panic(which in 0usize..3, edits in prop::collection::vec((0usize..65536, any::<u8>()), 1..8)) {
        let name = ["bitnet-tiny-h256-tq2_0.gguf", "bitnet-tiny-h256-i2_s.gguf", "bitnet-tiny-h256-tq1_0.gguf"][which];
        let Some(mut bytes) = fixture(name) else { return Ok(()) };
        for (at, v) in edits {
            let at = at % bytes.len();
            bytes[at] = v;
        }
        check(bytes);
    }

    #[test]
    fn truncations_never_panic(cut in 0usize..6_000_000) {
        let Some(bytes) = fixture("bitnet-tiny-h256-i2_s.gguf") else { return Ok(()) };
        let cut = cut % bytes.len();
        prop_assert!(GgufFile::from_bytes(bytes[..cut].to_vec()).is_err());
    }
}
