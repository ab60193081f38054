//! Every model family's graph against llama.cpp, on tiny synthetic files of that graph (`bitnet synth --shape
//! PRESET -s 7`) whose references `tests/ref/family-refs.sh` made (see `tests/data/families/README.md`):
//! - `tiny-llama`: ternary `llama` files (Falcon3-1.58bit, Llama3-8B-1.58): adjacent-pair RoPE on Q/K rows that
//!   llama.cpp's converters permute for it, SiLU, no sub-norms, a separate head;
//! - `tiny-falcon-e`: the same with the head tied to the embedding (Falcon-E);
//! - `tiny-1bitllm`: llama.cpp's `bitnet` (1bitLLM's bitnet_b1_58-large/3B): SiLU, sub-norms, half-split RoPE,
//!   tied head, a SentencePiece vocabulary.
//!
//! Each: the tokens of the text equal llama-tokenize's, float logits within 1e-4 of the logit scale, llama.cpp's
//! Q8_K numerics on TQ2_0 within its own quantization noise, `bitnet perplexity` equal to `llama-perplexity`
//! within 0.1%.

use std::path::{Path, PathBuf};

use bitnet_burn::io::synth::write_synthetic;
use bitnet_burn::text::tokenizer::Tokenizer;
use bitnet_burn::{ActQuant, CacheType, ModelConfig};
use bitnet_gguf::{GgmlType, GgufFile};
use burn::backend::NdArray;
use sha2::{Digest, Sha256};

use crate::common::model::{argmax, logits, margin, max_abs, rms};
use crate::common::{bitnet_json, read_npy, repo_dir};

fn data(preset: &str) -> PathBuf {
    repo_dir().join("tests/data/families").join(preset)
}

fn refs(preset: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(data(preset).join("refs.json")).unwrap()).unwrap()
}

/// The synthetic file the references were computed from, written again (checked byte for byte by SHA-256: a
/// changed generator must regenerate the references, not silently compare against another model).
fn synthetic(preset: &str, dir: &Path, ty: GgmlType, key: &str) -> PathBuf {
    let path = dir.join(format!("{key}.gguf"));
    write_synthetic(&path, &ModelConfig::preset(preset).unwrap(), ty, 7).unwrap();
    let sha: String = Sha256::digest(std::fs::read(&path).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        sha,
        refs(preset)["synth_sha256"][key],
        "the synthetic {preset} {key} file changed: run tests/ref/family-refs.sh {preset}"
    );
    path
}

/// llama-tokenize's ids (BOS first) of the held-out text's first 200 bytes.
fn prefix_tokens(preset: &str) -> Vec<u32> {
    let refs = refs(preset);
    let ids = refs["prefix_tokens"].as_array().unwrap();
    ids.iter().map(|t| t.as_u64().unwrap() as u32).collect()
}

/// llama.cpp's logits of the first 64 prefix tokens, `[positions][vocab]`.
fn reference(preset: &str, name: &str) -> Vec<Vec<f32>> {
    let (shape, values) = read_npy(&data(preset).join(format!("llamacpp-{name}.npy")));
    values
        .chunks(shape[1] as usize)
        .map(<[f32]>::to_vec)
        .collect()
}

fn logit_tokens(preset: &str) -> Vec<u32> {
    prefix_tokens(preset)[..64].to_vec()
}

/// The tokenizer the file describes (BPE bytes or SentencePiece with scores and byte fallback) splits text as
/// llama.cpp does: the perplexity comparison depends on it too.
fn tokens_equal_llama_tokenize(preset: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = synthetic(preset, dir.path(), GgmlType::F32, "f32");
    let tok = Tokenizer::from_gguf(&GgufFile::open(path).unwrap()).unwrap();
    let text = std::fs::read(repo_dir().join("tests/data/shakespeare-heldout.txt")).unwrap();
    let prefix = std::str::from_utf8(&text[..200]).unwrap();
    assert_eq!(tok.encode(prefix, true).unwrap(), prefix_tokens(preset));
}

/// Float activations on the F32 file against llama.cpp's F32 run (f32 KV cache, no flash attention): both
/// compute in f32 and differ in summation order only, so 1e-4 of the largest logit (measured: 1.2e-4 on logits up
/// to ~15, i.e. 1e-5 of the scale). A wrong RoPE pairing, activation or head moves logits by 0.1 to 10.
fn float_logits_equal_llamacpp(preset: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = synthetic(preset, dir.path(), GgmlType::F32, "f32");
    let model = crate::common::load_float::<NdArray>(&path, &Default::default());
    let ours = logits(&model, &logit_tokens(preset), ActQuant::Float);
    let theirs = reference(preset, "f32");
    let scale = theirs.iter().flatten().fold(0f32, |m, v| m.max(v.abs()));
    for (p, (o, r)) in ours.iter().zip(&theirs).enumerate() {
        let d = max_abs(o, r);
        assert!(
            d <= 1e-4 * scale,
            "position {p}: max |Δ| {d} > 1e-4 · {scale}"
        );
        assert_eq!(argmax(o), argmax(r), "position {p}: top-1");
    }
}

/// llama.cpp's numerics on TQ2_0 (int8 activations per 256-column block, `--act q8k`) against its run on the
/// same values as TQ2_0 with an F16 embedding and head. Most positions agree exactly; where a summation-order
/// difference moves a value across an int8 rounding boundary, the flip spreads to the logits (measured: at most
/// 0.22 rms at one position, mean over positions ≤ 0.013). So each position must be within llama.cpp's own Q8_K
/// noise there (its Q8_K run's rms distance from its float run, 0.09 to 0.5), the mean within 0.03, and the
/// top-1 equal wherever llama.cpp's margin exceeds 0.5. A wrong graph is off by ~6 rms everywhere.
fn q8k_logits_on_tq2_0_equal_llamacpp(preset: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = synthetic(preset, dir.path(), GgmlType::TQ2_0, "tq2_0");
    let model = crate::common::load_float::<NdArray>(&path, &Default::default());
    let ours = logits(&model, &logit_tokens(preset), ActQuant::Q8K);
    let (q8k, float) = (reference(preset, "q8k"), reference(preset, "f32"));
    let mut total = 0.0;
    for (p, ((o, r), f)) in ours.iter().zip(&q8k).zip(&float).enumerate() {
        let (d, noise) = (rms(o, r), rms(r, f));
        assert!(
            d <= noise,
            "position {p}: rms {d} > llama.cpp's own Q8_K noise {noise}"
        );
        if margin(r) > 0.5 {
            assert_eq!(argmax(o), argmax(r), "position {p}: top-1");
        }
        total += d;
    }
    let mean = total / ours.len() as f32;
    assert!(mean <= 0.03, "mean rms over positions {mean}");
}

/// The q8_0 KV cache (`--cache-type q8_0`) against llama.cpp's (`-ctk q8_0 -ctv q8_0`, with flash attention),
/// float activations on the F32 file. Both turn each key and value row by llama.cpp's Walsh–Hadamard rotation and
/// store it as Q8_0 blocks. At position 0 a query attends to its own key only, so the logits depend on the stored
/// values alone: there they must equal llama.cpp's within the float comparison's 1e-4 of the logit scale (a
/// different quantizer, block layout or rotation is off by ~0.1). Later, llama.cpp also quantizes each query to
/// Q8_0 for its dot products with the keys, where we keep f32: so what q8_0 does to our logits (against our f32
/// cache) must be no larger than what it does to llama.cpp's (its q8_0-KV against its f32-KV logits; measured
/// mean per position ours 0.43-0.48 against llama.cpp's 0.64-0.77, largest 1.1-2.1 against 2.1-2.6, on these
/// random models whose logits swing with any rounding), on average and at worst. A cache that kept f32 fails too:
/// the logits must move. On burn-ndarray and on wgpu (the CubeCL kernels' q8_0 cache).
fn q8_0_cache_matches_llamacpp_q8_0_kv<B: bitnet_burn::TernaryBackend>(
    preset: &str,
    device: &B::Device,
) {
    let dir = tempfile::tempdir().unwrap();
    let path = synthetic(preset, dir.path(), GgmlType::F32, "f32");
    let mut model = crate::common::load_float::<B>(&path, device);
    let full = logits(&model, &logit_tokens(preset), ActQuant::Float);
    model.set_cache_type(CacheType::Q8_0);
    assert_eq!(model.cache_type(), CacheType::Q8_0);
    let ours = logits(&model, &logit_tokens(preset), ActQuant::Float);
    let (q8, f32s) = (reference(preset, "q8kv"), reference(preset, "f32"));
    let scale = f32s.iter().flatten().fold(0f32, |m, v| m.max(v.abs()));
    let first = max_abs(&ours[0], &q8[0]);
    assert!(
        first <= 1e-4 * scale,
        "position 0 (the stored values alone): max |Δ| {first} from llama.cpp's q8_0 KV > 1e-4 · {scale}"
    );
    let moved: Vec<f32> = ours.iter().zip(&full).map(|(o, f)| max_abs(o, f)).collect();
    let spread: Vec<f32> = q8.iter().zip(&f32s).map(|(r, f)| max_abs(r, f)).collect();
    let mean = |x: &[f32]| x.iter().sum::<f32>() / x.len() as f32;
    let max = |x: &[f32]| x.iter().fold(0f32, |m, &v| m.max(v));
    assert!(
        mean(&moved) <= mean(&spread) && max(&moved) <= max(&spread),
        "q8_0 moved our logits by {} on average, {} at most; llama.cpp's by {} and {}",
        mean(&moved),
        max(&moved),
        mean(&spread),
        max(&spread)
    );
    assert!(
        max(&moved) > 1e-4,
        "the q8_0 cache left every logit within {} of the f32 cache's",
        max(&moved)
    );
}

/// `bitnet perplexity` (float activations) over the held-out text in windows of 128 against
/// `llama-perplexity -c 128` on the F32 file: the same tokens, windows and scored positions, so within 0.1%.
fn perplexity_equals_llama_perplexity(preset: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = synthetic(preset, dir.path(), GgmlType::F32, "f32");
    let text = repo_dir().join("tests/data/shakespeare-heldout.txt");
    let report = bitnet_json(&[
        "perplexity",
        "-m",
        path.to_str().unwrap(),
        "-f",
        text.to_str().unwrap(),
        "-c",
        "128",
        "--act",
        "float",
        "--head",
        "float",
        "--json",
    ]);
    let ours = report["ppl"].as_f64().unwrap();
    let theirs = refs(preset)["perplexity_ctx128"].as_f64().unwrap();
    assert!(
        (ours / theirs - 1.0).abs() <= 1e-3,
        "perplexity {ours} vs llama-perplexity {theirs}"
    );
}

macro_rules! family_tests {
    ($($family:ident: $preset:literal),* $(,)?) => {$(
        mod $family {
            #[test]
            fn tokens_equal_llama_tokenize() {
                super::tokens_equal_llama_tokenize($preset);
            }
            #[test]
            fn float_logits_equal_llamacpp() {
                super::float_logits_equal_llamacpp($preset);
            }
            #[test]
            fn q8k_logits_on_tq2_0_equal_llamacpp() {
                super::q8k_logits_on_tq2_0_equal_llamacpp($preset);
            }
            #[test]
            fn q8_0_cache_matches_llamacpp_q8_0_kv() {
                super::q8_0_cache_matches_llamacpp_q8_0_kv::<burn::backend::NdArray>(
                    $preset,
                    &Default::default(),
                );
            }
            #[cfg(feature = "wgpu")]
            #[test]
            fn q8_0_cache_on_wgpu_matches_llamacpp_q8_0_kv() {
                let test = concat!(stringify!($family), "::q8_0_cache_on_wgpu_matches_llamacpp_q8_0_kv");
                if let Some(device) = crate::common::wgpu_device_or_skip(test) {
                    super::q8_0_cache_matches_llamacpp_q8_0_kv::<burn::backend::Wgpu>($preset, &device);
                }
            }
            #[test]
            fn perplexity_equals_llama_perplexity() {
                super::perplexity_equals_llama_perplexity($preset);
            }
        }
    )*};
}

family_tests!(
    llama: "tiny-llama",
    falcon_e: "tiny-falcon-e",
    bitnet_1bitllm: "tiny-1bitllm",
);

/// What the reader infers for each family, from the architecture and vocabulary alone (no key says it).
#[test]
fn the_config_says_what_each_family_computes() {
    use bitnet_burn::Activation::Silu;
    use bitnet_gguf::RopeType::{Neox, Normal};
    let dir = tempfile::tempdir().unwrap();
    for (preset, rope, tied, sub_norms, family) in [
        (
            "tiny-llama",
            Normal,
            false,
            false,
            "Falcon3-1.58bit / Llama3-8B-1.58",
        ),
        ("tiny-falcon-e", Normal, true, false, "Falcon-E"),
        (
            "tiny-1bitllm",
            Neox,
            true,
            true,
            "1bitLLM bitnet_b1_58-large/3B",
        ),
    ] {
        let path = synthetic(preset, dir.path(), GgmlType::F32, "f32");
        let c = ModelConfig::from_gguf(&GgufFile::open(&path).unwrap()).unwrap();
        assert_eq!(
            (c.rope_type, c.activation, c.tied_embeddings, c.sub_norms),
            (rope, Silu, tied, sub_norms),
            "{preset}"
        );
        assert!(c.family().starts_with(family), "{preset}: {}", c.family());
        let info = bitnet_json(&["info", path.to_str().unwrap(), "--json"]);
        assert_eq!(info["config"]["family"], c.family());
    }
}

/// A `bitnet` file whose vocabulary tells neither family (here a WordPiece one) and with no `bitnet.hidden_act`
/// is refused with a message naming the key and the flag; `--activation silu` runs it, equal to llama.cpp (which
/// computes SiLU for every `bitnet` file), and `--activation relu2` computes something else.
#[test]
fn an_untellable_activation_is_refused_and_the_flag_overrides_it() {
    let dir = tempfile::tempdir().unwrap();
    let src = GgufFile::open(synthetic("tiny-1bitllm", dir.path(), GgmlType::F32, "f32")).unwrap();
    let mut w = bitnet_gguf::GgufWriter::from_file(&src).unwrap();
    w.set(
        "tokenizer.ggml.model",
        bitnet_gguf::Value::String("bert".into()),
    )
    .unwrap();
    let path = dir.path().join("bert-vocab.gguf");
    w.write_file(&path).unwrap();
    let path = path.to_str().unwrap();
    let tokens: Vec<String> = logit_tokens("tiny-1bitllm")[..8]
        .iter()
        .map(u32::to_string)
        .collect();
    let tokens = tokens.join(",");
    let out = dir.path().join("logits.npy");
    let run = |act: Option<&str>| {
        let mut args = vec![
            "logits",
            "-m",
            path,
            "--tokens",
            &tokens,
            "--all-positions",
            "--act",
            "float",
        ];
        args.extend(["--head", "float", "--cache-type", "f32"]);
        args.extend(["-o", out.to_str().unwrap()]);
        if let Some(a) = act {
            args.extend(["--activation", a]);
        }
        crate::common::bitnet(&args)
    };
    let refused = run(None);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        err.contains("bitnet.hidden_act") && err.contains("--activation"),
        "{err}"
    );
    let theirs = reference("tiny-1bitllm", "f32");
    let scale = theirs.iter().flatten().fold(0f32, |m, v| m.max(v.abs()));
    for (act, equal) in [("silu", true), ("relu2", false)] {
        assert!(run(Some(act)).status.success());
        let (shape, ours) = read_npy(&out);
        assert_eq!(shape, [8, 512]);
        let d = ours
            .chunks(512)
            .zip(&theirs)
            .map(|(o, r)| max_abs(o, r))
            .fold(0f32, f32::max);
        assert_eq!(d <= 1e-4 * scale, equal, "--activation {act}: max |Δ| {d}");
    }
}
