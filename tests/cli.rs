//! The `bitnet` binary as a user runs it: output, files written, exit codes and error messages.

mod common;

use std::process::{Command, Output};

use common::model::{max_abs, reference};
use common::*;

fn bitnet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bitnet"))
        .args(args)
        .output()
        .expect("run bitnet")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn info_json_reports_each_fixtures_config() {
    let Some(dir) = fixtures_or_skip("info_json_reports_each_fixtures_config") else {
        return;
    };
    for v in VARIANTS {
        let path = fixture_gguf(&dir, v);
        let out = bitnet(&["info", path.to_str().unwrap(), "--json"]);
        assert!(out.status.success(), "{v}: {}", stderr(&out));
        let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let c = &j["config"];
        assert_eq!(c["hidden_size"], 256, "{v}");
        assert_eq!(
            (
                c["n_layers"].as_u64(),
                c["n_heads"].as_u64(),
                c["n_kv_heads"].as_u64()
            ),
            (Some(2), Some(8), Some(2)),
            "{v}"
        );
        assert_eq!(
            (c["ffn_size"].as_u64(), c["vocab_size"].as_u64()),
            (Some(768), Some(8192)),
            "{v}"
        );
        assert_eq!(c["activation"], "relu2", "{v}");
        assert_eq!(c["tied_embeddings"], true, "{v}");
        assert_eq!(j["tensor_count"], 24, "{v}");
        assert_eq!(j["tokenizer"]["tokens"], 8192, "{v}");
        assert!(
            j["verdict"]
                .as_str()
                .unwrap()
                .starts_with("valid: runnable"),
            "{v}"
        );
        let q = j["tensors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == "blk.0.attn_q.weight")
            .unwrap();
        let ty = match v {
            "f32" => "F32",
            "i2_s" => "I2_S",
            v if v.starts_with("tq1") => "TQ1_0",
            _ => "TQ2_0",
        };
        assert_eq!(q["type"], ty, "{v}");
    }
}

#[test]
fn info_text_shows_the_architecture_and_activation_source() {
    let Some(dir) = fixtures_or_skip("info_text_shows_the_architecture_and_activation_source")
    else {
        return;
    };
    let out = bitnet(&["info", fixture_gguf(&dir, "i2_s").to_str().unwrap()]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("arch        bitnet-25"), "{text}");
    assert!(text.contains("activation  relu2 (inferred"), "{text}");
    assert!(
        text.contains("blk.1.ffn_down.weight") && text.contains("I2_S"),
        "{text}"
    );
}

#[test]
fn logits_match_transformers_and_cover_all_positions() {
    let Some(dir) = fixtures_or_skip("logits_match_transformers_and_cover_all_positions") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let npy = tmp.path().join("l.npy");
    let model = fixture_gguf(&dir, "f32");
    let tokens = common::model::sequence(&dir, "seq16")
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let out = bitnet(&[
        "logits",
        "-m",
        model.to_str().unwrap(),
        "--tokens",
        &tokens,
        "--all-positions",
        "--float-activations",
        "-o",
        npy.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (shape, values) = read_npy(&npy);
    assert_eq!(shape, [16, 8192]);
    let refs = reference(&dir, "llamacpp-relu2-f32-kvf32", "logits_seq16_all");
    for (p, r) in refs.iter().enumerate() {
        assert!(
            max_abs(&values[p * 8192..(p + 1) * 8192], r) <= 1e-4,
            "position {p}"
        );
    }
    let out = bitnet(&[
        "logits",
        "-m",
        model.to_str().unwrap(),
        "--tokens",
        "7936",
        "-o",
        npy.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let (shape, values) = read_npy(&npy);
    assert_eq!(shape, [1, 8192]);
    let hf = reference(&dir, "hf", "logits_seq1_last");
    assert!(common::model::rms(&values, &hf[0]) <= 0.1);
}

#[test]
fn errors_are_clear_and_exit_non_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let out = bitnet(&["info", "/no/such/model.gguf"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("/no/such/model.gguf") && stderr(&out).contains("No such file"),
        "{}",
        stderr(&out)
    );

    let broken = tmp.path().join("broken.gguf");
    std::fs::write(
        &broken,
        b"GGUF\x03\x00\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff",
    )
    .unwrap();
    let out = bitnet(&["info", broken.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("broken.gguf") && stderr(&out).contains("tensor count at offset 8"),
        "{}",
        stderr(&out)
    );

    let out = bitnet(&["info", "--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2), "clap usage errors exit 2");
    let out = bitnet(&["logits", "-m", "x.gguf", "-o", "y.npy"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "--tokens is required: {}",
        stderr(&out)
    );
    let out = bitnet(&["logits", "-m", "x.gguf", "--tokens", "a,b", "-o", "y.npy"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn model_errors_name_the_problem() {
    let Some(dir) = fixtures_or_skip("model_errors_name_the_problem") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let npy = tmp.path().join("l.npy");
    let model = fixture_gguf(&dir, "tq2_0");
    let out = bitnet(&[
        "logits",
        "-m",
        model.to_str().unwrap(),
        "--tokens",
        "9000",
        "-o",
        npy.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("token id 9000 is outside the vocabulary (size 8192)"),
        "{}",
        stderr(&out)
    );
    #[cfg(not(feature = "cuda"))]
    {
        let out = bitnet(&[
            "logits",
            "-m",
            model.to_str().unwrap(),
            "--tokens",
            "1",
            "--backend",
            "cuda",
            "-o",
            npy.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            stderr(&out).contains("rebuild with `--features cuda`"),
            "{}",
            stderr(&out)
        );
    }
}
