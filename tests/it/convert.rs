//! `bitnet convert` on the fixture's transformers checkpoint (`hf/`, packed uint8 + legacy `bitlinear`
//! weight_scale) against the fixture GGUFs made by llama.cpp's and bitnet.cpp's own converters: every tensor
//! dequantizes to exactly the same values, the tokenizer encodes identically, and gguf-py reads the files.

use std::path::Path;

use crate::common::*;
use bitnet_burn::io::convert::{convert_checkpoint, ConvertError, ConvertOptions};
use bitnet_burn::text::tokenizer::Tokenizer;
use bitnet_burn::{ActQuant, ModelConfig};
use bitnet_gguf::{GgmlType, GgufFile};
use burn::backend::NdArray;

fn convert(
    hf: &Path,
    out: &Path,
    linear: GgmlType,
    embedding: GgmlType,
) -> Result<(), ConvertError> {
    let mut calls = 0;
    convert_checkpoint(
        hf,
        out,
        ConvertOptions { linear, embedding },
        |done, total| {
            calls += 1;
            assert!(done <= total);
        },
    )?;
    assert!(calls > 0, "progress is reported");
    Ok(())
}

/// Every tensor of `a` has the same name, type, dims and dequantized values in `b`, and nothing else is in `b`.
fn assert_same_tensors(a: &GgufFile, b: &GgufFile, what: &str) {
    let names = |f: &GgufFile| {
        let mut v: Vec<String> = f.tensors().iter().map(|t| t.name.clone()).collect();
        v.sort();
        v
    };
    assert_eq!(names(a), names(b), "{what}: tensor names");
    for ta in a.tensors() {
        let tb = b.tensor(&ta.name).unwrap();
        assert_eq!((ta.ty, &ta.dims), (tb.ty, &tb.dims), "{what}: {}", ta.name);
        assert!(
            a.dequantize(ta).unwrap() == b.dequantize(tb).unwrap(),
            "{what}: {} values differ",
            ta.name
        );
    }
}

#[test]
fn converted_checkpoint_equals_the_reference_converters_output() {
    let Some(dir) = fixtures_or_skip("converted_checkpoint_equals_the_reference_converters_output")
    else {
        return;
    };
    let hf = dir.join("bitnet-tiny-h256/hf");
    let tmp = tempfile::tempdir().unwrap();
    // (our linear type, our embedding type, the fixture made by llama.cpp / bitnet.cpp with those types)
    for (linear, embedding, variant) in [
        (GgmlType::I2S, GgmlType::F16, "i2_s"),
        (GgmlType::TQ2_0, GgmlType::F16, "tq2_0-f16emb"),
        (GgmlType::TQ1_0, GgmlType::F16, "tq1_0-f16emb"),
        (GgmlType::F32, GgmlType::F32, "f32"),
    ] {
        let out = tmp.path().join(format!("{variant}.gguf"));
        convert(&hf, &out, linear, embedding).unwrap();
        let ours = GgufFile::open(&out).unwrap();
        let reference = GgufFile::open(fixture_gguf(&dir, variant)).unwrap();
        assert_same_tensors(&ours, &reference, variant);
        let (mut c1, mut c2) = (
            ModelConfig::from_gguf(&ours).unwrap(),
            ModelConfig::from_gguf(&reference).unwrap(),
        );
        assert_eq!(c1.activation, bitnet_burn::Activation::Relu2, "{variant}");
        (c1.architecture, c2.architecture) = (String::new(), String::new());
        (c1.activation_source, c2.activation_source) = (String::new(), String::new());
        (c1.rope_type_source, c2.rope_type_source) = (String::new(), String::new());
        (c1.activation, c2.activation) = (c2.activation, c2.activation);
        assert_eq!(c1, c2, "{variant}: config");

        let (t1, t2) = (
            Tokenizer::from_gguf(&ours).unwrap(),
            Tokenizer::from_gguf(&reference).unwrap(),
        );
        assert_eq!(t1.vocab_size(), t2.vocab_size());
        assert_eq!((t1.bos_id(), t1.stop_ids()), (t2.bos_id(), t2.stop_ids()));
        let refs: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("tokenizer_refs.json")).unwrap())
                .unwrap();
        for case in refs["tiny_truncated_8k"].as_array().unwrap() {
            let text = case["text"].as_str().unwrap();
            // add_bos_token follows tokenizer.json's post-processor, as llama.cpp's converter decides it;
            // bitnet.cpp's converter always writes true.
            if variant != "i2_s" {
                let ids = t1.encode(text, true).unwrap();
                assert_eq!(ids, t2.encode(text, true).unwrap(), "{variant}: {text:?}");
            }
            let hf_ids: Vec<u32> = serde_json::from_value(case["hf_ids"].clone()).unwrap();
            assert_eq!(
                t1.encode(text, false).unwrap(),
                hf_ids,
                "{variant}: {text:?}"
            );
        }
    }
}

#[test]
fn converted_file_runs_like_the_reference_file() {
    let Some(dir) = fixtures_or_skip("converted_file_runs_like_the_reference_file") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("i2_s.gguf");
    convert(
        &dir.join("bitnet-tiny-h256/hf"),
        &out,
        GgmlType::I2S,
        GgmlType::F16,
    )
    .unwrap();
    let device = Default::default();
    let logits = |path: &Path| {
        let model = bitnet_burn::load::<NdArray>(path, &device).unwrap();
        let mut cache = model.new_cache(1, 16);
        model
            .forward(&[vec![1, 500, 7000, 42]], &mut cache, ActQuant::Int8)
            .unwrap()
            .into_data()
            .to_vec::<f32>()
            .unwrap()
    };
    assert_eq!(logits(&out), logits(&fixture_gguf(&dir, "i2_s")));
}

#[test]
fn gguf_py_reads_the_converted_files() {
    let test = "gguf_py_reads_the_converted_files";
    let Some(dir) = fixtures_or_skip(test) else {
        return;
    };
    if !python_references_or_skip(test) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    for ty in [GgmlType::TQ2_0, GgmlType::TQ1_0, GgmlType::F16] {
        let out = tmp.path().join(format!("{ty}.gguf"));
        convert(&dir.join("bitnet-tiny-h256/hf"), &out, ty, GgmlType::Q8_0).unwrap();
        let ours = GgufFile::open(&out).unwrap();
        // gguf-py (llama.cpp's reader) dequantizes every tensor; the sums must equal ours.
        let script = "import sys, gguf\nr = gguf.GGUFReader(sys.argv[1])\n\
            print(r.fields['general.architecture'].contents())\n\
            for t in r.tensors: print(t.name, float(gguf.dequantize(t.data, t.tensor_type).astype('float64').sum()))";
        let output = std::process::Command::new("python3")
            .args(["-c", script])
            .arg(&out)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let text = String::from_utf8(output.stdout).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("bitnet"));
        let mut n = 0;
        for line in lines {
            let (name, sum) = line.rsplit_once(' ').unwrap();
            let t = ours.tensor(name).unwrap();
            let ours_sum: f64 = ours.dequantize(t).unwrap().iter().map(|&v| v as f64).sum();
            let py_sum: f64 = sum.parse().unwrap();
            assert!(
                (ours_sum - py_sum).abs() <= 1e-6 * ours_sum.abs().max(1.0),
                "{ty}: {name}"
            );
            n += 1;
        }
        assert_eq!(n, ours.tensors().len());
    }
}

/// A copy of the checkpoint where `weight_scale` follows `autobitlinear` (it multiplies the output), written as
/// f32 `1/ws` of the legacy value: the same model, so it must convert to the same tensors.
fn autobitlinear_copy(hf: &Path, out: &Path) {
    use safetensors::{tensor::TensorView, Dtype, SafeTensors};
    std::fs::create_dir_all(out).unwrap();
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(hf.join(f), out.join(f)).unwrap();
    }
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(hf.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["quantization_config"]["linear_class"], "bitlinear");
    config["quantization_config"]["linear_class"] = "autobitlinear".into();
    std::fs::write(out.join("config.json"), config.to_string()).unwrap();
    let bytes = std::fs::read(hf.join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut scales = Vec::new();
    for (name, t) in st.tensors() {
        if name.ends_with("weight_scale") {
            assert_eq!(t.dtype(), Dtype::BF16);
            let ws = half::bf16::from_le_bytes([t.data()[0], t.data()[1]]).to_f32();
            scales.push((name, (1.0 / ws).to_le_bytes().to_vec()));
        }
    }
    let mut views: Vec<(String, TensorView)> = st
        .tensors()
        .into_iter()
        .filter(|(n, _)| !n.ends_with("weight_scale"))
        .collect();
    for (name, data) in &scales {
        views.push((
            name.clone(),
            TensorView::new(Dtype::F32, vec![1], data).unwrap(),
        ));
    }
    safetensors::serialize_to_file(views, None, &out.join("model.safetensors")).unwrap();
}

#[test]
fn weight_scale_is_read_as_the_config_says() {
    let Some(dir) = fixtures_or_skip("weight_scale_is_read_as_the_config_says") else {
        return;
    };
    let hf = dir.join("bitnet-tiny-h256/hf");
    let tmp = tempfile::tempdir().unwrap();
    let auto = tmp.path().join("auto");
    autobitlinear_copy(&hf, &auto);
    let (a, b) = (tmp.path().join("legacy.gguf"), tmp.path().join("auto.gguf"));
    convert(&hf, &a, GgmlType::F32, GgmlType::F32).unwrap();
    convert(&auto, &b, GgmlType::F32, GgmlType::F32).unwrap();
    assert_same_tensors(
        &GgufFile::open(&a).unwrap(),
        &GgufFile::open(&b).unwrap(),
        "autobitlinear",
    );
}

#[test]
fn bad_checkpoints_and_types_are_clear_errors() {
    let Some(dir) = fixtures_or_skip("bad_checkpoints_and_types_are_clear_errors") else {
        return;
    };
    let hf = dir.join("bitnet-tiny-h256/hf");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("x.gguf");
    let err = convert(&hf, &out, GgmlType::Q4_0, GgmlType::F16).unwrap_err();
    assert!(
        err.to_string()
            .contains("linear type Q4_0 is not one of I2_S, TQ2_0"),
        "{err}"
    );
    let err = convert(&hf, &out, GgmlType::TQ2_0, GgmlType::TQ2_0).unwrap_err();
    assert!(err.to_string().contains("embedding type TQ2_0"), "{err}");

    let broken = tmp.path().join("broken");
    std::fs::create_dir(&broken).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(hf.join(f), broken.join(f)).unwrap();
    }
    let err = convert(&broken, &out, GgmlType::TQ2_0, GgmlType::F16).unwrap_err();
    assert!(err.to_string().contains("tokenizer.json"), "{err}");

    std::fs::copy(hf.join("tokenizer.json"), broken.join("tokenizer.json")).unwrap();
    let bytes = std::fs::read(hf.join("model.safetensors")).unwrap();
    std::fs::write(broken.join("model.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    let err = convert(&broken, &out, GgmlType::TQ2_0, GgmlType::F16).unwrap_err();
    assert!(err.to_string().contains("model.safetensors"), "{err}");
    assert!(!out.exists(), "no output after a failure");
}

#[test]
fn llama_cpp_runs_the_converted_tq2_0_file() {
    let test = "llama_cpp_runs_the_converted_tq2_0_file";
    let Some(dir) = fixtures_or_skip(test) else {
        return;
    };
    let Some(bin) = llamacpp_bin_or_skip(test) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("tq2_0.gguf");
    convert(
        &dir.join("bitnet-tiny-h256/hf"),
        &out,
        GgmlType::TQ2_0,
        GgmlType::F16,
    )
    .unwrap();
    // Greedy text from llama.cpp on our file and on llama.cpp's own conversion of the same checkpoint.
    let complete = |model: &Path| {
        let o = std::process::Command::new(bin.join("llama-completion"))
            .arg("-m")
            .arg(model)
            .args([
                "-p",
                "The quick brown fox",
                "-n",
                "24",
                "--ignore-eos",
                "--temp",
                "0",
            ])
            .args(["-no-cnv", "--no-warmup", "-t", "2"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        o.stdout
    };
    let ours = complete(&out);
    assert!(ours.len() > "The quick brown fox".len() + 24);
    assert_eq!(ours, complete(&fixture_gguf(&dir, "tq2_0-f16emb")));
}

#[test]
fn the_token_list_is_padded_to_the_embedding_rows() {
    let Some(dir) = fixtures_or_skip("the_token_list_is_padded_to_the_embedding_rows") else {
        return;
    };
    let hf = dir.join("bitnet-tiny-h256/hf");
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = tmp.path().join("ckpt");
    std::fs::create_dir(&ckpt).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(hf.join(f), ckpt.join(f)).unwrap();
    }
    // Drop the added tokens from id 8000 on: the tokenizer then knows fewer tokens than the embedding has rows.
    let mut tok: serde_json::Value =
        serde_json::from_slice(&std::fs::read(hf.join("tokenizer.json")).unwrap()).unwrap();
    tok["added_tokens"]
        .as_array_mut()
        .unwrap()
        .retain(|t| t["id"].as_u64().unwrap() < 8000);
    std::fs::write(ckpt.join("tokenizer.json"), tok.to_string()).unwrap();
    let out = tmp.path().join("padded.gguf");
    convert(&ckpt, &out, GgmlType::TQ2_0, GgmlType::F16).unwrap();
    let file = GgufFile::open(&out).unwrap();
    let tokenizer = Tokenizer::from_gguf(&file).unwrap();
    assert_eq!(tokenizer.vocab_size(), 8192);
    assert_eq!(tokenizer.token(8191).as_deref(), Some("[PAD8191]"));

    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(hf.join("config.json")).unwrap()).unwrap();
    config["vocab_size"] = 4096.into();
    std::fs::write(ckpt.join("config.json"), config.to_string()).unwrap();
    std::fs::copy(hf.join("tokenizer.json"), ckpt.join("tokenizer.json")).unwrap();
    let err = convert(&ckpt, &out, GgmlType::TQ2_0, GgmlType::F16).unwrap_err();
    assert!(
        err.to_string()
            .contains("8192 tokens for a model with vocab_size 4096"),
        "{err}"
    );
}
