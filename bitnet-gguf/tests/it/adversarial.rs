//! Broken and hostile files: each is refused with the error kind that names the problem, never a panic,
//! hang or allocation beyond a small multiple of the file size.

use bitnet_gguf::{quant, Array, ErrorKind, GgmlType, GgufFile, GgufWriter, Value};

/// A small valid file: two metadata entries and two tensors (F32 and I2_S).
fn valid() -> Vec<u8> {
    let mut w = GgufWriter::new();
    w.set("general.architecture", Value::String("bitnet".into()))
        .unwrap();
    w.set(
        "tokenizer.ggml.tokens",
        Value::Array(Array::String(vec!["a".into(), "b".into()])),
    )
    .unwrap();
    let f: Vec<u8> = (0..16).flat_map(|i| (i as f32).to_le_bytes()).collect();
    w.add_tensor("norm.weight", &[16], GgmlType::F32, f)
        .unwrap();
    let ternary: Vec<f32> = (0..256).map(|i| [(-0.5f32), 0.0, 0.5][i % 3]).collect();
    let i2s = quant::quantize("w", GgmlType::I2S, &ternary, 128).unwrap();
    w.add_tensor("blk.0.attn_q.weight", &[128, 2], GgmlType::I2S, i2s)
        .unwrap();
    let mut out = Vec::new();
    w.write_to(&mut out).unwrap();
    out
}

fn kind(bytes: Vec<u8>) -> ErrorKind {
    GgufFile::from_bytes(bytes)
        .expect_err("must be refused")
        .kind
}

/// Offset of the first tensor info (after the metadata) in `valid()`.
fn tensor_info_offset(bytes: &[u8]) -> usize {
    let needle = b"norm.weight";
    bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap()
        - 8
}

#[test]
fn valid_file_opens_and_decodes() {
    let f = GgufFile::from_bytes(valid()).unwrap();
    assert_eq!(f.tensors().len(), 2);
    let w = f
        .dequantize(f.tensor("blk.0.attn_q.weight").unwrap())
        .unwrap();
    assert_eq!(&w[..3], &[-0.5, 0.0, 0.5]);
}

#[test]
fn bad_magic() {
    let mut b = valid();
    b[0] = b'X';
    assert!(matches!(kind(b), ErrorKind::BadMagic { found } if &found == b"XGUF"));
    assert!(matches!(kind(b"GG".to_vec()), ErrorKind::BadMagic { .. }));
    assert!(matches!(kind(Vec::new()), ErrorKind::BadMagic { .. }));
}

#[test]
fn unsupported_versions_name_big_endian_and_v1() {
    let mut b = valid();
    b[4..8].copy_from_slice(&1u32.to_le_bytes());
    assert!(
        matches!(kind(b.clone()), ErrorKind::UnsupportedVersion { found: 1, hint } if hint.contains("version 1"))
    );
    b[4..8].copy_from_slice(&3u32.to_be_bytes());
    assert!(
        matches!(kind(b), ErrorKind::UnsupportedVersion { hint, .. } if hint.contains("big-endian"))
    );
}

#[test]
fn every_truncation_is_refused_without_panic() {
    let b = valid();
    for len in 0..b.len() {
        let e = GgufFile::from_bytes(b[..len].to_vec());
        assert!(e.is_err(), "truncated to {len} bytes was accepted");
    }
}

#[test]
fn absurd_counts_are_refused_before_allocating() {
    let mut b = valid();
    b[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(
        matches!(kind(b.clone()), ErrorKind::CountTooLarge { ref what, count: u64::MAX, .. } if what == "tensor count")
    );
    let mut b = valid();
    b[16..24].copy_from_slice(&(1u64 << 40).to_le_bytes());
    assert!(
        matches!(kind(b), ErrorKind::CountTooLarge { ref what, .. } if what == "metadata count")
    );
    // The first key's length.
    let mut b = valid();
    b[24..32].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
    assert!(matches!(kind(b), ErrorKind::CountTooLarge { .. }));
}

#[test]
fn absurd_array_length_is_refused() {
    let mut b = valid();
    let key = b"tokenizer.ggml.tokens";
    let at = b.windows(key.len()).position(|w| w == key).unwrap() + key.len() + 4 + 4; // + value type + elem type
    b[at..at + 8].copy_from_slice(&(1u64 << 50).to_le_bytes());
    assert!(
        matches!(kind(b), ErrorKind::CountTooLarge { ref what, .. } if what.contains("array length"))
    );
}

#[test]
fn invalid_utf8_and_unknown_value_type() {
    let mut b = valid();
    b[32] = 0xFF; // first byte of the first key
    assert!(matches!(kind(b), ErrorKind::InvalidUtf8 { offset: 32, .. }));
    let mut b = valid();
    let key_len = u64::from_le_bytes(b[24..32].try_into().unwrap()) as usize;
    b[32 + key_len..36 + key_len].copy_from_slice(&99u32.to_le_bytes());
    assert!(matches!(
        kind(b),
        ErrorKind::UnknownValueType { found: 99, .. }
    ));
}

#[test]
fn duplicate_keys_and_tensors() {
    let mut b = valid();
    // Rename the second key to the first ("tokenizer.ggml.tokens" → a 20-byte "general.architecture" needs equal length).
    let (k1, k2) = (
        b"general.architecture".as_slice(),
        b"tokenizer.ggml.token".as_slice(),
    );
    let at = b.windows(k2.len()).position(|w| w == k2).unwrap();
    b[at - 8..at].copy_from_slice(&(k1.len() as u64).to_le_bytes());
    b[at..at + k1.len()].copy_from_slice(k1);
    let _ = b.remove(at + k1.len()); // drop the trailing 's'; later offsets shift but the key is read first
    assert!(
        matches!(kind(b), ErrorKind::DuplicateKey { ref key, .. } if key == "general.architecture")
    );

    let mut w = GgufWriter::new();
    w.add_tensor("a", &[4], GgmlType::F32, vec![0u8; 16])
        .unwrap();
    assert!(
        w.add_tensor("a", &[4], GgmlType::F32, vec![0u8; 16])
            .is_err(),
        "the writer refuses duplicates too"
    );
}

#[test]
fn unknown_and_ambiguous_type_ids_are_named() {
    let mut b = valid();
    let info = tensor_info_offset(&b);
    let type_at = info + 8 + "norm.weight".len() + 4 + 8;
    b[type_at..type_at + 4].copy_from_slice(&39u32.to_le_bytes());
    match kind(b.clone()) {
        ErrorKind::UnknownType {
            found: 39, hint, ..
        } => assert!(hint.contains("MXFP4") && hint.contains("TL2")),
        other => panic!("{other:?}"),
    }
    b[type_at..type_at + 4].copy_from_slice(&1000u32.to_le_bytes());
    assert!(matches!(
        kind(b),
        ErrorKind::UnknownType { found: 1000, .. }
    ));
}

#[test]
fn i2_s_that_does_not_fit_names_the_size_rule() {
    // Declare the I2_S tensor twice as large: n/4 + 32 then runs past the file.
    let mut b = valid();
    let name = b"blk.0.attn_q.weight";
    let at = b.windows(name.len()).position(|w| w == name).unwrap() + name.len() + 4 + 8;
    b[at..at + 8].copy_from_slice(&4u64.to_le_bytes());
    match kind(b) {
        ErrorKind::WrongDataSize {
            ty,
            expected,
            found,
            ..
        } => {
            assert!(ty.contains("I2_S") && ty.contains("n/4 + 32"), "{ty}");
            assert_eq!(expected, 512 / 4 + 32);
            assert!(found < expected);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn zero_or_nan_i2_s_scale_is_refused_by_name() {
    for bad in [0.0f32, f32::NAN, f32::INFINITY] {
        let mut b = valid();
        let f = GgufFile::from_bytes(valid()).unwrap();
        let t = f.tensor("blk.0.attn_q.weight").unwrap();
        let at = (f.data_offset() + t.offset + t.size - 32) as usize;
        b[at..at + 4].copy_from_slice(&bad.to_le_bytes());
        assert!(
            matches!(kind(b), ErrorKind::BadScale { ref tensor, .. } if tensor == "blk.0.attn_q.weight"),
            "{bad}"
        );
    }
}

#[test]
fn misaligned_overlapping_and_out_of_range_tensors() {
    let f = GgufFile::from_bytes(valid()).unwrap();
    let second = f.tensor("blk.0.attn_q.weight").unwrap().clone();
    let info = tensor_info_offset(&valid());
    let first_offset_at = info + 8 + "norm.weight".len() + 4 + 8 + 4;
    let second_offset_at = {
        let b = valid();
        let name = b"blk.0.attn_q.weight";
        b.windows(name.len()).position(|w| w == name).unwrap() + name.len() + 4 + 16 + 4
    };
    let mut b = valid();
    b[first_offset_at..first_offset_at + 8].copy_from_slice(&3u64.to_le_bytes());
    assert!(matches!(
        kind(b),
        ErrorKind::Misaligned {
            offset: 3,
            alignment: 32,
            ..
        }
    ));
    let mut b = valid();
    b[second_offset_at..second_offset_at + 8].copy_from_slice(&32u64.to_le_bytes()); // inside norm.weight's 64 bytes
    assert!(matches!(
        kind(b),
        ErrorKind::Overlap { .. } | ErrorKind::WrongDataSize { .. }
    ));
    let mut b = valid();
    b[first_offset_at..first_offset_at + 8]
        .copy_from_slice(&(second.offset + 1024 * 32).to_le_bytes());
    assert!(matches!(kind(b), ErrorKind::DataOutOfRange { .. }));
}

#[test]
fn bad_shapes_and_block_multiples() {
    let mut w = GgufWriter::new();
    assert!(
        w.add_tensor("q", &[100], GgmlType::Q8_0, vec![0u8; 34 * 3])
            .is_err(),
        "100 is not a multiple of 32"
    );
    assert!(w
        .add_tensor("z", &[0, 4], GgmlType::F32, Vec::new())
        .is_err());
    assert!(
        w.add_tensor("f", &[4], GgmlType::F32, vec![0u8; 15])
            .is_err(),
        "wrong byte count"
    );
    // A shape whose element count overflows u64 is refused by the reader.
    let mut b = valid();
    let info = tensor_info_offset(&b);
    let dim_at = info + 8 + "norm.weight".len() + 4;
    b[dim_at..dim_at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(
        kind(b),
        ErrorKind::BadShape {
            why: "element count overflows",
            ..
        }
    ));
}

#[test]
fn errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.gguf");
    std::fs::write(&path, b"NOPE0000").unwrap();
    let msg = GgufFile::open(&path).unwrap_err().to_string();
    assert!(
        msg.contains("broken.gguf") && msg.contains("bad magic"),
        "{msg}"
    );
}

#[test]
fn a_nan_tq2_0_block_scale_is_refused_with_its_type_and_offset() {
    let ternary: Vec<f32> = (0..512).map(|i| [(-0.5f32), 0.0, 0.5][i % 3]).collect();
    let mut w = GgufWriter::new();
    w.set("general.architecture", Value::String("bitnet".into()))
        .unwrap();
    let tq2 = quant::quantize("w", GgmlType::TQ2_0, &ternary, 256).unwrap();
    w.add_tensor("blk.0.ffn_up.weight", &[256, 2], GgmlType::TQ2_0, tq2)
        .unwrap();
    let mut b = Vec::new();
    w.write_to(&mut b).unwrap();
    let f = GgufFile::from_bytes(b.clone()).unwrap();
    let t = f.tensor("blk.0.ffn_up.weight").unwrap();
    // the second row's block: 64 bytes of codes, then its f16 scale
    let scale_at = f.data_offset() + t.offset + 66 + 64;
    b[scale_at as usize..scale_at as usize + 2].copy_from_slice(&0x7e00u16.to_le_bytes());
    let f = GgufFile::from_bytes(b).unwrap();
    let err = quant::for_each_ternary_row(&f, f.tensor("blk.0.ffn_up.weight").unwrap(), |_| {})
        .unwrap_err();
    assert!(
        matches!(err.kind, ErrorKind::BadScale { ty: GgmlType::TQ2_0, offset, .. } if offset == scale_at),
        "{err}"
    );
    let message = err.to_string();
    assert!(
        message.contains("TQ2_0 scale") && !message.contains("I2_S"),
        "{message}"
    );
}
