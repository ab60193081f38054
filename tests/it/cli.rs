//! The `bitnet` binary as a user runs it: output, files written, exit codes and error messages.

use crate::common;

use std::process::{Command, Output};

use crate::common::model::{max_abs, reference};
use crate::common::*;

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
        text.contains("pre-tokens  llama-bpe (no tokenizer.ggml.pre; the vocabulary is Llama 3's"),
        "{text}"
    );
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
        "--head",
        "float",
        "--cache-type",
        "f32",
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
        "--cache-type",
        "f32",
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

/// Greedy generation through the CLI, from text: the fixture prompt's text re-tokenizes to the reference ids,
/// and the generated ids equal transformers' greedy ids up to the first step whose top1−top2 margin is below
/// 0.1 (step 18 of 32). On the CPU our int8 logits of this file equal transformers' (max |Δ| 0 on seq16), so
/// 0.1 only leaves room for other summation orders; bitnet.cpp and llama.cpp diverge after 5 and 7 tokens.
#[test]
fn greedy_generation_from_text_reproduces_transformers() {
    let Some(dir) = fixtures_or_skip("greedy_generation_from_text_reproduces_transformers") else {
        return;
    };
    let model = fixture_gguf(&dir, "i2_s");
    let seq16 = common::model::sequence(&dir, "seq16");
    let tok = bitnet_burn::text::tokenizer::Tokenizer::from_gguf(
        &bitnet_gguf::GgufFile::open(&model).unwrap(),
    )
    .unwrap();
    let prompt = tok.decode(&seq16[1..]).unwrap();
    let out = bitnet(&[
        "run",
        "-m",
        model.to_str().unwrap(),
        "-p",
        &prompt,
        "-n",
        "32",
        "--cache-type",
        "f32",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<u64> = j["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let prompt_ids: Vec<u32> = j["prompt_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    assert_eq!(
        prompt_ids, seq16,
        "BOS + the prompt text tokenizes to the reference prompt"
    );
    let hf = common::model::result_json(&dir, "hf");
    let expected: Vec<u64> = hf["greedy_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let margins: Vec<f64> = hf["greedy_top1_minus_top2"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let decided = margins
        .iter()
        .position(|&m| m < 0.1)
        .unwrap_or(margins.len());
    assert!(decided >= 10, "the reference decides {decided} steps");
    assert_eq!(
        ids[..decided],
        expected[..decided],
        "greedy ids where transformers' margin ≥ 0.1"
    );
    assert_eq!(j["generated_tokens"], 32);
    assert!(
        j["decode_tok_s"].as_f64().unwrap() > 0.0 && j["prefill_tok_s"].as_f64().unwrap() > 0.0
    );
}

/// An empty prompt runs from BOS alone where the file adds one (as llama.cpp and llama-server do: its id is the
/// first of llama.cpp's tokenization of the fixture text) and is refused where nothing would be left.
#[test]
fn run_takes_an_empty_prompt_from_bos_and_refuses_prompts_longer_than_the_context() {
    let Some(dir) = fixtures_or_skip(
        "run_takes_an_empty_prompt_from_bos_and_refuses_prompts_longer_than_the_context",
    ) else {
        return;
    };
    let model = fixture_gguf(&dir, "i2_s"); // the fixture file that adds BOS
    let bos = common::model::sequence(&dir, "seq16")[0];
    let no_bos_file = fixture_gguf(&dir, "tq2_0"); // add_bos_token = false in this file
    let m = model.to_str().unwrap();
    let out = bitnet(&["run", "-m", m, "-p", "", "-n", "4", "--temp", "0", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["prompt_ids"], serde_json::json!([bos]));
    assert!((1..=4).contains(&j["ids"].as_array().unwrap().len()), "{j}");
    for args in [
        vec!["run", "-m", m, "-p", "", "--no-bos"],
        vec!["run", "-m", no_bos_file.to_str().unwrap(), "-p", ""],
    ] {
        let out = bitnet(&args);
        assert_eq!(out.status.code(), Some(1));
        assert!(stderr(&out).contains("empty prompt"), "{}", stderr(&out));
    }
    let long = "word ".repeat(5000); // > 4096 tokens of context
    let out = bitnet(&["run", "-m", m, "-p", &long, "-n", "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("context overflow"),
        "{}",
        stderr(&out)
    );
}

/// Special tokens written in the prompt are parsed (as transformers and llama.cpp do), and a file whose
/// metadata says `add_bos_token = false` (llama.cpp's converter here) gets no automatic BOS.
#[test]
fn special_tokens_in_the_prompt_and_the_files_bos_policy() {
    let Some(dir) = fixtures_or_skip("special_tokens_in_the_prompt_and_the_files_bos_policy")
    else {
        return;
    };
    let model = fixture_gguf(&dir, "tq2_0-f16emb");
    let seq16 = common::model::sequence(&dir, "seq16");
    let tok = bitnet_burn::text::tokenizer::Tokenizer::from_gguf(
        &bitnet_gguf::GgufFile::open(&model).unwrap(),
    )
    .unwrap();
    let text = tok.decode(&seq16[1..]).unwrap();
    let ids = |args: &[&str]| -> Vec<u64> {
        let out = bitnet(&[&["tokenize", "-m", model.to_str().unwrap(), "--json"], args].concat());
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let expected: Vec<u64> = seq16.iter().map(|&t| t as u64).collect();
    assert_eq!(ids(&["-p", &format!("<|begin_of_text|>{text}")]), expected);
    assert_eq!(
        ids(&["-p", &text]),
        expected[1..],
        "add_bos_token = false in this file"
    );
    assert_eq!(
        ids(&["-p", &format!("<|begin_of_text|>{text}"), "--no-bos"]),
        expected
    );
}

fn bitnet_with_input(args: &[&str], input: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_bitnet"))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run bitnet");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn chat_answers_each_line_resets_and_reports_refused_messages() {
    let Some(dir) = fixtures_or_skip("chat_answers_each_line_resets_and_reports_refused_messages")
    else {
        return;
    };
    let model = fixture_gguf(&dir, "i2_s");
    let m = model.to_str().unwrap();
    let out = bitnet_with_input(
        &["chat", "-m", m, "-n", "6", "-v"],
        "Hello there\n\nHow are you?\n/reset\nHi\n/exit\nnever read\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.matches("decode").count(), 3, "three replies: {err}");
    assert!(err.contains("(conversation reset)"), "{err}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 3);
    // After /reset the conversation restarts: the reply to "Hi" is what a fresh chat answers.
    let fresh = bitnet_with_input(&["chat", "-m", m, "-n", "6"], "Hi\n");
    let replies = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        replies.lines().last(),
        String::from_utf8_lossy(&fresh.stdout).lines().last()
    );

    let long = format!("{}\nshort\n", "word ".repeat(5000));
    let out = bitnet_with_input(&["chat", "-m", m, "-n", "4"], &long);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("tokens plus") && err.contains("context holds"),
        "{err}"
    );
    assert!(err.contains("1 message(s) failed"), "{err}");
}

#[test]
fn run_batch_writes_one_result_per_line_and_flags_bad_lines() {
    let Some(dir) = fixtures_or_skip("run_batch_writes_one_result_per_line_and_flags_bad_lines")
    else {
        return;
    };
    let model = fixture_gguf(&dir, "i2_s");
    let m = model.to_str().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("prompts.jsonl");
    let output = tmp.path().join("results.jsonl");
    let long = "word ".repeat(5000); // > 4096 tokens of context
    std::fs::write(
        &input,
        format!(
            "{{\"id\": 1, \"prompt\": \"The quick brown fox\", \"max_tokens\": 5}}\n\
             {{\"id\": \"two\", \"prompt\": \"{long}\"}}\n\
             not json\n\
             \n\
             {{\"prompt\": \"Once upon\", \"temp\": 0.9, \"seed\": 7, \"stop\": [\"zzz\"]}}\n"
        ),
    )
    .unwrap();
    let args = [
        "run-batch",
        "-m",
        m,
        "-i",
        input.to_str().unwrap(),
        "-o",
        output.to_str().unwrap(),
        "-n",
        "3",
    ];
    let out = bitnet(&args);
    assert!(!out.status.success(), "two lines fail");
    assert!(
        stderr(&out).contains("2 of 4 prompts failed"),
        "{}",
        stderr(&out)
    );
    let results: Vec<serde_json::Value> = std::fs::read_to_string(&output)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(results.len(), 4);
    assert_eq!(results[0]["id"], 1);
    assert_eq!(results[0]["generated_tokens"], 5, "per-line max_tokens");
    assert!(results[1]["error"]
        .as_str()
        .unwrap()
        .contains("context overflow"));
    assert_eq!(results[1]["id"], "two");
    assert!(results[2]["error"]
        .as_str()
        .unwrap()
        .contains("bad request"));
    assert_eq!(results[3]["line"], 5);
    assert_eq!(results[3]["generated_tokens"], 3, "command-line -n");
    // The same request through `run` gives the same ids (greedy) and the same sample (seeded).
    let single = bitnet(&[
        "run",
        "-m",
        m,
        "-p",
        "The quick brown fox",
        "-n",
        "5",
        "--json",
    ]);
    let j: serde_json::Value = serde_json::from_slice(&single.stdout).unwrap();
    assert_eq!(j["ids"], results[0]["ids"]);
    let sampled = bitnet(&[
        "run",
        "-m",
        m,
        "-p",
        "Once upon",
        "-n",
        "3",
        "--temp",
        "0.9",
        "-s",
        "7",
        "--json",
    ]);
    let j: serde_json::Value = serde_json::from_slice(&sampled.stdout).unwrap();
    assert_eq!(j["ids"], results[3]["ids"]);
}

#[test]
fn compat_check_loads_the_model_and_names_what_fails() {
    let Some(dir) = fixtures_or_skip("compat_check_loads_the_model_and_names_what_fails") else {
        return;
    };
    let good = fixture_gguf(&dir, "tq2_0");
    let out = bitnet(&["compat-check", good.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["verdict"], "can run");
    let load = j["checks"].as_array().unwrap().last().unwrap();
    assert_eq!(
        (load["check"].as_str(), load["status"].as_str()),
        (Some("load"), Some("ok"))
    );
    assert!(load["detail"]
        .as_str()
        .unwrap()
        .contains("8192 finite logits"));

    let out = bitnet(&["compat-check", good.to_str().unwrap(), "--backend", "cuda"]);
    if cfg!(not(feature = "cuda")) {
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout).contains("no cuda backend"));
    }

    let tmp = tempfile::tempdir().unwrap();
    let cut = tmp.path().join("cut.gguf");
    std::fs::write(&cut, &std::fs::read(&good).unwrap()[..100_000]).unwrap();
    let out = bitnet(&["compat-check", cut.to_str().unwrap()]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("FAIL gguf") && text.contains("offset"),
        "{text}"
    );
    assert!(text.contains("cannot run"), "{text}");

    // A file the size of the official 2B-4T GGUF but other bytes: the checksum catches it.
    let fake = tmp.path().join("ggml-model-i2_s.gguf");
    std::fs::File::create(&fake)
        .unwrap()
        .set_len(1_187_801_280)
        .unwrap();
    let out = bitnet(&["compat-check", fake.to_str().unwrap(), "--no-load"]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("microsoft/bitnet-b1.58-2B-4T-gguf") && text.contains("corrupt or modified"),
        "{text}"
    );
}
