//! bitnet-gguf on the real fixture files: every file opens with the right config, every tensor decodes
//! bit-exactly to gguf-py's values (and, for I2_S and F32, to transformers' effective weights), ternary rows
//! stream back the same values, and read → write → read is byte-identical.

use crate::common::*;
use bitnet_gguf::quant::for_each_ternary_row;
use bitnet_gguf::{quant, Activation, Array, GgmlType, GgufFile, GgufWriter, ModelConfig, Value};

#[test]
fn every_fixture_opens_with_the_tiny_model_config() {
    let Some(dir) = fixtures_or_skip("every_fixture_opens_with_the_tiny_model_config") else {
        return;
    };
    for v in VARIANTS {
        let f = GgufFile::open(fixture_gguf(&dir, v)).unwrap();
        let c = ModelConfig::from_gguf(&f).unwrap();
        let arch = if v == "i2_s" { "bitnet-25" } else { "bitnet" };
        assert_eq!(c.architecture, arch, "{v}");
        assert_eq!(
            (
                c.hidden_size,
                c.n_layers,
                c.n_heads,
                c.n_kv_heads,
                c.ffn_size,
                c.vocab_size,
                c.context_length
            ),
            (256, 2, 8, 2, 768, 8192, 4096),
            "{v}"
        );
        assert_eq!(
            (c.rope_theta, c.rope_dim, c.rms_eps),
            (500000.0, 32, 1e-5),
            "{v}"
        );
        assert_eq!(
            c.activation,
            Activation::Relu2,
            "{v}: the 2B-4T family is relu² even without a key"
        );
        assert!(c.tied_embeddings && c.sub_norms, "{v}");
        assert_eq!(f.tensors().len(), 2 + 2 * 11, "{v}");
    }
}

#[test]
fn types_are_what_the_converters_wrote() {
    let Some(dir) = fixtures_or_skip("types_are_what_the_converters_wrote") else {
        return;
    };
    let ty = |v: &str, name: &str| {
        GgufFile::open(fixture_gguf(&dir, v))
            .unwrap()
            .tensor(name)
            .unwrap()
            .ty
    };
    assert_eq!(ty("tq2_0", "token_embd.weight"), GgmlType::Q6K);
    assert_eq!(ty("tq2_0", "blk.0.attn_q.weight"), GgmlType::TQ2_0);
    assert_eq!(ty("tq1_0", "blk.1.ffn_down.weight"), GgmlType::TQ1_0);
    assert_eq!(ty("tq2_0-f16emb", "token_embd.weight"), GgmlType::F16);
    assert_eq!(ty("i2_s", "blk.0.ffn_gate.weight"), GgmlType::I2S);
    assert_eq!(ty("i2_s", "token_embd.weight"), GgmlType::F16);
    assert_eq!(ty("f32", "blk.0.attn_k.weight"), GgmlType::F32);
}

/// Bit-exact (`to_bits` equality): the decoders are ports of ggml's reference code and must not round differently.
fn assert_bit_exact(what: &str, ours: &[f32], reference: &[f32]) {
    assert_eq!(ours.len(), reference.len(), "{what}: length");
    if let Some(i) = (0..ours.len()).find(|&i| ours[i].to_bits() != reference[i].to_bits()) {
        panic!(
            "{what}: element {i}: ours {} reference {}",
            ours[i], reference[i]
        );
    }
}

#[test]
fn every_tensor_dequantizes_exactly_like_gguf_py() {
    let Some(dir) = fixtures_or_skip("every_tensor_dequantizes_exactly_like_gguf_py") else {
        return;
    };
    if !python_references_or_skip("every_tensor_dequantizes_exactly_like_gguf_py") {
        return;
    }
    // Stock gguf-py cannot read I2_S (type 36); that file is checked against transformers below.
    for v in VARIANTS.iter().filter(|v| **v != "i2_s") {
        let path = fixture_gguf(&dir, v);
        let refs = python_reference("gguf", &path);
        let f = GgufFile::open(&path).unwrap();
        for t in f.tensors() {
            let (_, reference) = read_npy(&refs.path().join(format!("{}.npy", t.name)));
            assert_bit_exact(
                &format!("{v} {} ({})", t.name, t.ty),
                &f.dequantize(t).unwrap(),
                &reference,
            );
        }
    }
}

#[test]
fn i2_s_and_f32_decode_to_the_transformers_effective_weights() {
    let Some(dir) = fixtures_or_skip("i2_s_and_f32_decode_to_the_transformers_effective_weights")
    else {
        return;
    };
    if !python_references_or_skip("i2_s_and_f32_decode_to_the_transformers_effective_weights") {
        return;
    }
    let refs = python_reference("hf", &dir.join("bitnet-tiny-h256/hf"));
    for v in ["i2_s", "f32"] {
        let f = GgufFile::open(fixture_gguf(&dir, v)).unwrap();
        for t in f.tensors() {
            let (_, reference) = read_npy(&refs.path().join(format!("{}.npy", t.name)));
            assert_bit_exact(
                &format!("{v} {} ({})", t.name, t.ty),
                &f.dequantize(t).unwrap(),
                &reference,
            );
        }
    }
}

#[test]
fn ternary_rows_stream_the_dequantized_values() {
    let Some(dir) = fixtures_or_skip("ternary_rows_stream_the_dequantized_values") else {
        return;
    };
    for v in ["f32", "tq2_0", "tq1_0", "i2_s"] {
        let f = GgufFile::open(fixture_gguf(&dir, v)).unwrap();
        for t in f.tensors().iter().filter(|t| {
            t.name.contains("attn_") && !t.name.contains("norm")
                || t.name.contains("ffn_") && !t.name.contains("norm")
        }) {
            let dense = f.dequantize(t).unwrap();
            let (rows, cols) = t.rows_cols();
            let mut seen = 0;
            for_each_ternary_row(&f, t, |r| {
                for k in 0..cols {
                    let value = r.trits[k] as f32 * r.scales[k / r.block];
                    assert_eq!(
                        value.to_bits(),
                        dense[r.row * cols + k].to_bits(),
                        "{v} {} [{}, {k}]",
                        t.name,
                        r.row
                    );
                }
                seen += 1;
            })
            .unwrap();
            assert_eq!(seen, rows);
        }
    }
}

/// The byte holding element `k` of a TQ2_0 or I2_S tensor's flattened trits, and the shift of its 2-bit code.
fn code_at(ty: GgmlType, k: usize) -> (usize, u32) {
    match ty {
        // 256 per block of 66 bytes: element 128h + 32l + m in byte 32h + m, bits 2l.
        GgmlType::TQ2_0 => {
            let (h, l, m) = (k % 256 / 128, k % 128 / 32, k % 32);
            (k / 256 * 66 + 32 * h + m, 2 * l as u32)
        }
        // 128 per 32 bytes: element 32g + m of a group in byte m, bits 6 - 2g.
        _ => {
            let (g, m) = (k % 128 / 32, k % 32);
            (k / 128 * 32 + m, 6 - 2 * g as u32)
        }
    }
}

#[test]
fn a_code_3_in_a_ternary_weight_is_refused_with_its_place() {
    let Some(dir) = fixtures_or_skip("a_code_3_in_a_ternary_weight_is_refused_with_its_place")
    else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    for v in ["tq2_0", "i2_s"] {
        let path = fixture_gguf(&dir, v);
        let f = GgufFile::open(&path).unwrap();
        let name = "blk.1.ffn_down.weight";
        let t = f.tensor(name).unwrap().clone();
        let (_, cols) = t.rows_cols();
        let (row, column) = (5, cols - 37);
        let (byte, shift) = code_at(t.ty, row * cols + column);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[(f.data_offset() + t.offset) as usize + byte] |= 3 << shift;
        let bad = tmp.path().join(format!("{v}-code3.gguf"));
        std::fs::write(&bad, &bytes).unwrap();

        let f = GgufFile::open(&bad).unwrap();
        let mut rows_before = 0;
        let err = for_each_ternary_row(&f, f.tensor(name).unwrap(), |_| rows_before += 1)
            .unwrap_err()
            .to_string();
        let place = format!("code 3 at row {row}, column {column}");
        assert!(err.contains(name) && err.contains(&place), "{v}: {err}");
        assert_eq!(rows_before, row, "{v}: the rows before the bad one stream");

        // The model's loader says so too, and the CLI exits with it.
        let out =
            crate::common::bitnet(&["run", "-m", bad.to_str().unwrap(), "-p", "hi", "-n", "1"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{v}: a code 3 loaded");
        assert!(
            stderr.contains(&place) && stderr.contains(name),
            "{v}: {stderr}"
        );
    }
}

#[test]
fn read_write_read_is_byte_identical() {
    let Some(dir) = fixtures_or_skip("read_write_read_is_byte_identical") else {
        return;
    };
    for v in VARIANTS {
        let path = fixture_gguf(&dir, v);
        let original = std::fs::read(&path).unwrap();
        let f = GgufFile::open(&path).unwrap();
        let mut written = Vec::new();
        GgufWriter::from_file(&f)
            .unwrap()
            .write_to(&mut written)
            .unwrap();
        assert!(
            written == original,
            "{v}: rewritten file differs ({} vs {} bytes)",
            written.len(),
            original.len()
        );
    }
}

#[test]
fn gguf_py_reads_what_we_write() {
    if !python_references_or_skip("gguf_py_reads_what_we_write") {
        return;
    }
    let mut w = GgufWriter::new();
    let values = [
        ("t.u8", Value::U8(200)),
        ("t.i8", Value::I8(-5)),
        ("t.u16", Value::U16(60000)),
        ("t.i16", Value::I16(-30000)),
        ("t.u32", Value::U32(4_000_000_000)),
        ("t.i32", Value::I32(-2_000_000_000)),
        ("t.f32", Value::F32(0.25)),
        ("t.bool", Value::Bool(true)),
        ("t.string", Value::String("héllo ▁world".into())),
        ("t.u64", Value::U64(1 << 40)),
        ("t.i64", Value::I64(-(1 << 40))),
        ("t.f64", Value::F64(-1.5)),
        (
            "t.strings",
            Value::Array(Array::String(vec!["a".into(), "".into(), "ü".into()])),
        ),
        ("t.floats", Value::Array(Array::F32(vec![1.0, -2.5]))),
    ];
    for (k, v) in &values {
        w.set(k, v.clone()).unwrap();
    }
    let data: Vec<f32> = (0..2048)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
        .collect();
    let ternary: Vec<f32> = data
        .iter()
        .map(|v| v.signum() * (v.abs() > 0.3) as i32 as f32 * 0.125)
        .collect();
    for ty in [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::Q8_0,
        GgmlType::TQ1_0,
        GgmlType::TQ2_0,
    ] {
        let src = if ty.is_ternary() { &ternary } else { &data };
        let bytes = quant::quantize(ty.name(), ty, src, 512).unwrap();
        w.add_tensor(&format!("w.{}", ty.name()), &[512, 4], ty, bytes)
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ours.gguf");
    w.write_file(&path).unwrap();
    let refs = python_reference("gguf", &path);
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(refs.path().join("metadata.json")).unwrap()).unwrap();
    assert_eq!(meta["t.u32"], 4_000_000_000u64);
    assert_eq!(meta["t.i64"], -(1i64 << 40));
    assert_eq!(meta["t.string"], "héllo ▁world");
    assert_eq!(meta["t.bool"], true);
    assert_eq!(meta["t.f64"], -1.5);
    assert_eq!(meta["t.strings"], serde_json::json!(["a", "", "ü"]));
    assert_eq!(meta["t.floats"], serde_json::json!([1.0, -2.5]));
    let f = GgufFile::open(&path).unwrap();
    for t in f.tensors() {
        let (_, reference) = read_npy(&refs.path().join(format!("{}.npy", t.name)));
        assert_bit_exact(
            &format!("{} read back by gguf-py", t.name),
            &f.dequantize(t).unwrap(),
            &reference,
        );
    }
}
