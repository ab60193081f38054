//! Quantize → dequantize round trips of the types the writer encodes.

use bitnet_gguf::{quant, GgmlType};

#[test]
fn ternary_types_store_ternary_weights_exactly() {
    let scale = 0.2373f32;
    let values: Vec<f32> = (0..1024)
        .map(|i| [(-scale), 0.0, scale][(i * 7 + i / 3) % 3])
        .collect();
    for ty in [GgmlType::I2S, GgmlType::TQ1_0, GgmlType::TQ2_0] {
        let bytes = quant::quantize("t", ty, &values, 512).unwrap();
        assert_eq!(bytes.len() as u64, ty.data_size(1024).unwrap());
        let mut back = vec![0f32; 1024];
        quant::dequantize("t", ty, &bytes, &mut back).unwrap();
        // TQ types store the block scale as f16.
        let s = if ty == GgmlType::I2S {
            scale
        } else {
            half::f16::from_f32(scale).to_f32()
        };
        for (i, (&v, &b)) in values.iter().zip(&back).enumerate() {
            assert_eq!(b, (v / scale).round() * s, "{ty} element {i}");
        }
    }
}

#[test]
fn float_and_q8_0_round_trip_within_their_precision() {
    let values: Vec<f32> = (0..256).map(|i| ((i as f32) * 0.37).sin() * 3.0).collect();
    for (ty, tol) in [
        (GgmlType::F32, 0.0),
        (GgmlType::F16, 2e-3),
        (GgmlType::BF16, 2e-2),
        (GgmlType::Q8_0, 3.0 / 127.0),
    ] {
        let bytes = quant::quantize("t", ty, &values, 256).unwrap();
        let mut back = vec![0f32; 256];
        quant::dequantize("t", ty, &bytes, &mut back).unwrap();
        for (v, b) in values.iter().zip(&back) {
            assert!((v - b).abs() <= tol, "{ty}: {v} vs {b}");
        }
    }
}

#[test]
fn wrong_sizes_are_errors_not_panics() {
    let mut out = vec![0f32; 256];
    assert!(quant::dequantize("t", GgmlType::TQ2_0, &[0u8; 65], &mut out).is_err());
    assert!(
        quant::dequantize("t", GgmlType::Q4K, &[0u8; 144], &mut out).is_err(),
        "Q4_K is laid out, not decoded"
    );
    assert!(quant::quantize("t", GgmlType::TQ1_0, &[0.0; 100], 100).is_err());
}

#[test]
fn version_2_files_and_nested_arrays_round_trip() {
    use bitnet_gguf::{Array, GgufFile, GgufWriter, Value};
    let nested = Value::Array(Array::Array(vec![
        Array::U32(vec![1, 2, 3]),
        Array::String(vec!["x".into()]),
        Array::Array(vec![Array::Bool(vec![true])]),
    ]));
    let mut w = GgufWriter::new().version(2);
    w.set("test.nested", nested.clone()).unwrap();
    w.add_tensor(
        "t",
        &[32],
        GgmlType::F32,
        quant::quantize("t", GgmlType::F32, &[0.5; 32], 32).unwrap(),
    )
    .unwrap();
    let mut bytes = Vec::new();
    w.write_to(&mut bytes).unwrap();
    let f = GgufFile::from_bytes(bytes.clone()).unwrap();
    assert_eq!(f.version(), 2);
    assert_eq!(f.get("test.nested"), Some(&nested));
    assert_eq!(f.dequantize(f.tensor("t").unwrap()).unwrap(), vec![0.5; 32]);
    let mut again = Vec::new();
    GgufWriter::from_file(&f)
        .unwrap()
        .write_to(&mut again)
        .unwrap();
    assert_eq!(again, bytes);
}

#[test]
fn arrays_nested_deeper_than_the_limit_are_refused() {
    use bitnet_gguf::{Array, ErrorKind, GgufFile, GgufWriter, Value, MAX_NESTING};
    let mut deep = Array::U8(vec![1]);
    for _ in 0..=MAX_NESTING {
        deep = Array::Array(vec![deep]);
    }
    let mut w = GgufWriter::new();
    w.set("deep", Value::Array(deep)).unwrap();
    let mut bytes = Vec::new();
    w.write_to(&mut bytes).unwrap();
    assert!(matches!(
        GgufFile::from_bytes(bytes).unwrap_err().kind,
        ErrorKind::NestingTooDeep { .. }
    ));
}
