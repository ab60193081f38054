//! Declared tensors are produced while the file is written: the result equals the in-memory writer's, and a
//! failing producer leaves no file behind.

use bitnet_gguf::{quant, GgmlType, GgufFile, GgufWriter, Value};

fn tensors() -> Vec<(&'static str, Vec<f32>)> {
    vec![
        ("a", (0..64).map(|i| i as f32 * 0.25).collect()),
        (
            "b",
            (0..256).map(|i| ((i % 3) as f32 - 1.0) * 0.5).collect(),
        ),
    ]
}

fn ty(name: &str) -> GgmlType {
    if name == "a" {
        GgmlType::F16
    } else {
        GgmlType::TQ2_0
    }
}

#[test]
fn declared_tensors_are_written_as_if_added() {
    let dir = tempfile::tempdir().unwrap();
    let mut eager = GgufWriter::new();
    let mut lazy = GgufWriter::new();
    for w in [&mut eager, &mut lazy] {
        w.set("general.name", Value::String("s".into())).unwrap();
    }
    for (name, v) in tensors() {
        let bytes = quant::quantize(name, ty(name), &v, v.len()).unwrap();
        eager
            .add_tensor(name, &[v.len() as u64], ty(name), bytes)
            .unwrap();
        lazy.declare_tensor(name, &[v.len() as u64], ty(name))
            .unwrap();
    }
    let (a, b) = (dir.path().join("a.gguf"), dir.path().join("b.gguf"));
    eager.write_file(&a).unwrap();
    let mut asked = Vec::new();
    lazy.write_file_with(&b, |name| {
        asked.push(name.to_string());
        let v = &tensors().into_iter().find(|t| t.0 == name).unwrap().1;
        Ok(quant::quantize(name, ty(name), v, v.len()).unwrap())
    })
    .unwrap();
    assert_eq!(asked, ["a", "b"]);
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    GgufFile::open(&b).unwrap();
}

#[test]
fn a_failing_or_short_producer_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.gguf");
    let mut w = GgufWriter::new();
    w.declare_tensor("a", &[64], GgmlType::F32).unwrap();
    let err = w
        .write_file_with(&out, |_| Err(std::io::Error::other("source gone")))
        .unwrap_err();
    assert!(err.to_string().contains("source gone"), "{err}");
    let err = w.write_file_with(&out, |_| Ok(vec![0; 10])).unwrap_err();
    assert!(
        err.to_string().contains("10 bytes produced, 256 declared"),
        "{err}"
    );
    let err = w.write_file(&out).unwrap_err();
    assert!(err.to_string().contains("declared without data"), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
