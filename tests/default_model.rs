//! The Shakespeare model shipped in models/ (trained by examples/train.rs, see models/README.md) is the CLI's
//! default, and it models held-out Shakespeare far better than its vocabulary's unigram statistics would.

use std::process::Command;

fn bitnet(args: &[&str]) -> (bool, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_bitnet"))
        .args(args)
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn perplexity(extra: &[&str]) -> f64 {
    let text = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/shakespeare-heldout.txt"
    );
    let mut args = vec!["perplexity", "-f", text, "-c", "128", "--json"];
    args.extend_from_slice(extra);
    let (ok, out, err) = bitnet(&args);
    assert!(ok, "{err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    j["ppl"].as_f64().unwrap()
}

#[test]
fn the_default_model_knows_shakespeare() {
    // Two Gentlemen of Verona, which the training run held out. The unigram perplexity of the validation text is
    // 653 and a model with random weights scores about the vocabulary size (2048); models/README.md has the
    // trained model at ~115 on the whole validation text.
    let ppl = perplexity(&[]);
    assert!(ppl < 250.0, "perplexity {ppl}");
    let tq2 = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/models/shakespeare-bitnet-tq2_0.gguf"
    );
    let ppl_tq2 = perplexity(&["-m", tq2]);
    assert!(
        (ppl_tq2 / ppl - 1.0).abs() < 0.01,
        "I2_S {ppl} vs TQ2_0 {ppl_tq2}"
    );
}

#[test]
fn run_without_a_model_argument_writes_a_play() {
    let (ok, out, err) = bitnet(&["run", "-p", "ROMEO:", "-n", "48", "--temp", "0"]);
    assert!(ok, "{err}");
    // The continuation: several lines of text (the model writes speeches and line breaks).
    assert!(out.lines().count() >= 2 && out.len() > 60, "{out}");
}
