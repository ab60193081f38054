//! CPU kernel rates on 2B-4T shapes, and the sampler on its vocabulary: `cargo bench --bench kernels`. The DRAM-bound decode GEMV against the
//! memory bandwidth is `benches/gemv_bandwidth.rs`, which measures the two back to back.

mod common;

use std::hint::black_box;
use std::time::Instant;

use bitnet_burn::text::format::{FormatConstraint, OutputFormat, Schema};
use bitnet_burn::text::sampling::{Sampler, SamplerConfig};
use bitnet_burn::text::tokenizer::{SortedVocab, Tokenizer};
use bitnet_burn::text::tools::Tools;
use bitnet_kernels_cubecl::cpu::acts::QuantizedActs;
use bitnet_kernels_cubecl::cpu::{self, Isa};
use bitnet_kernels_cubecl::packing::{pack_row, words_per_row};
use bitnet_kernels_cubecl::reference::TernaryShape;
use common::{activations, lcg, pool};
use criterion::{criterion_group, criterion_main, Bencher, Criterion, Throughput};

/// Times `call` as the fastest of a sample's iterations times their count (see [`ternary_tiles_in_cache`]).
fn fastest_call(b: &mut Bencher, mut call: impl FnMut()) {
    b.iter_custom(|iters| {
        let fastest = (0..iters)
            .map(|_| {
                let start = Instant::now();
                call();
                start.elapsed()
            })
            .min()
            .unwrap_or_default();
        fastest * iters as u32
    })
}

/// The decode kernel's compute rate: 256 rows × 2560 columns (160 KiB, in L2) through the SIMD tile function
/// itself (no quantization, threads or rescaling), again and again on one thread. Memory-bound GEMVs can only
/// reach the bandwidth if this is well above it. Each sample is the fastest call of its iterations times their
/// count: a call takes microseconds, and on a shared host the mean swung ±30% with the neighbours while the
/// fastest call is the kernel's own rate.
fn ternary_tiles_in_cache(c: &mut Criterion) {
    let isa = Isa::detect();
    let (n, k) = (256, 2560);
    let shape = TernaryShape { n, k, block: k };
    let mut seed = 5;
    let w: Vec<u32> = (0..n * words_per_row(k)).map(|_| lcg(&mut seed)).collect();
    let x = activations(&mut seed, isa.token_tile() * k);
    let rows: Vec<u8> = w.iter().flat_map(|w| w.to_le_bytes()).collect();
    let mut g = c.benchmark_group(format!("ternary_tiles_in_cache_{n}x{k}"));
    g.throughput(Throughput::Bytes(rows.len() as u64));
    let mut counts = vec![1, 4, 8, 16, isa.token_tile()];
    counts.retain(|&t| t <= isa.token_tile());
    counts.dedup();
    for tokens in counts {
        let mut acts = QuantizedActs::default();
        acts.quantize_permuted(&x, tokens, k, k, isa.chunk());
        if isa.tile_multiplies(tokens) {
            acts.fill_tiles();
        }
        let mut out = vec![0i32; n * tokens];
        g.bench_function(format!("{}/tokens{tokens}", isa.name()), |b| {
            fastest_call(b, || {
                let a = acts.tile(0, tokens);
                cpu::ternary_tile_dots(isa, &rows, k / 4, a, shape, &mut out);
                black_box(&out);
            })
        });
    }
}

/// Prefill's kernels on one block of a matmul as prefill cuts it (1024 rows × 2560 columns of trits, 640 KiB,
/// and 32 tokens): the multiply-add tiles this path takes `token_tile` tokens at a time, and where the path has
/// one, the table-lookup kernel 32 and 16 tokens at a time (tables built, indices cut out and sums written
/// included). One thread, fastest call as above; throughput in multiply-adds.
fn prefill_kernels(c: &mut Criterion) {
    let isa = Isa::detect();
    let (n, k, m) = (1024, 2560, 32);
    let shape = TernaryShape { n, k, block: k };
    let mut seed = 9;
    let mut w = vec![0u32; n * words_per_row(k)];
    for row in w.chunks_exact_mut(words_per_row(k)) {
        let trits: Vec<i8> = (0..k).map(|_| (lcg(&mut seed) % 3) as i8 - 1).collect();
        pack_row(&trits, row);
    }
    let rows: Vec<u8> = w.iter().flat_map(|w| w.to_le_bytes()).collect();
    let mut acts = QuantizedActs::default();
    acts.quantize_permuted(&activations(&mut seed, m * k), m, k, k, isa.chunk());
    acts.fill_lanes();
    if isa.tile_multiplies(m) {
        acts.fill_tiles();
    }
    let mut out = vec![0i32; n * m];
    let mut g = c.benchmark_group(format!("prefill_kernels_{n}x{k}x{m}"));
    g.throughput(Throughput::Elements((n * k * m) as u64));
    let mut fastest = |name: String, calls: &dyn Fn(&mut [i32])| {
        g.bench_function(name, |b| {
            fastest_call(b, || {
                calls(&mut out);
                black_box(&out);
            })
        });
    };
    let tile = isa.token_tile();
    fastest(format!("{}/tiles{tile}", isa.name()), &|out| {
        for t0 in (0..m).step_by(tile) {
            let a = acts.tile(t0, tile.min(m - t0));
            cpu::ternary_tile_dots(isa, &rows, k / 4, a, shape, out);
        }
    });
    if isa.lookup_tokens(m) > 0 {
        // 16 tokens: the first 16 twice (a call reads its tokens from the start of a group of 32)
        for tokens in [32, 16] {
            fastest(format!("{}/lookup{tokens}", isa.name()), &|out| {
                for _ in 0..m / tokens {
                    let (a, lanes) = (acts.tile(0, tokens), acts.lanes_from(0));
                    cpu::ternary_lut_dots(isa, &rows, k / 4, a, lanes, shape, out);
                }
            });
        }
    }
}

/// One layer of 2B-4T's attention (20 query heads over 5 KV heads of 128) straight from a cache of f32 keys and
/// values, which stays in cache across iterations, so this is the compute rate (`BITNET_ISA=scalar` gives the
/// portable path for comparison): one decode step over 2048 positions (10.5 MB of keys and values in f32, half
/// that in f16) and over 512 (1.3 MB in f16: in a 2 MiB L2), and a 512-token prompt's prefill (causal, 16-query tiles),
/// from an f32 and an f16 cache.
/// Throughput counts multiply-adds.
fn cached_attention(c: &mut Criterion) {
    for (what, seq, len) in [
        ("decode", 1, 2048),
        ("decode", 1, 512),
        ("prefill", 512, 512),
    ] {
        let shape = cpu::AttentionShape {
            batch: 1,
            heads: 20,
            kv_heads: 5,
            seq,
            head_dim: 128,
            max_len: len,
            len,
        };
        let mut seed = 13;
        let mut values = |n: usize| activations(&mut seed, n);
        let q = values(seq * shape.heads * shape.head_dim);
        let cache = shape.kv_heads * shape.max_len * shape.head_dim;
        let (k, v) = (values(cache), values(cache));
        let mut g = c.benchmark_group(format!(
            "cached_attention_{what}_20x5x128_seq{seq}_len{len}"
        ));
        let keys_seen: usize = (0..seq).map(|i| len - seq + i + 1).sum();
        g.throughput(Throughput::Elements(
            (2 * shape.heads * keys_seen * shape.head_dim) as u64,
        ));
        let halves = |x: &[f32]| {
            x.iter()
                .map(|&x| half::f16::from_f32(x))
                .collect::<Vec<_>>()
        };
        let (k16, v16) = (halves(&k), halves(&v));
        for threads in [1, 2] {
            let pool = pool(threads);
            let isa = Isa::detect().name();
            g.bench_function(format!("{isa}/f32/t{threads}"), |b| {
                b.iter(|| pool.install(|| black_box(cpu::cached_attention(&q, &k, &v, shape))))
            });
            g.bench_function(format!("{isa}/f16/t{threads}"), |b| {
                b.iter(|| pool.install(|| black_box(cpu::cached_attention(&q, &k16, &v16, shape))))
            });
        }
    }
}

/// The int8 output head for one token and for the 4 and 8 tokens of a 4- and 8-stream decode step, on the
/// 2B-4T head's shape (128,256 rows of 2560 columns, 328 MB: streamed from memory, larger than any L3), on 2
/// threads, and for the 256 scored positions of a 512-token perplexity window (AMX tile multiplies where the
/// CPU has them; `BITNET_ISA=avx512gfni` for the vector path). Throughput counts multiply-adds: one token is
/// bound by the memory, 8 share each row's read.
fn int8_head(c: &mut Criterion) {
    let isa = Isa::detect();
    let (n, k) = (128_256, 2560);
    let mut seed = 17;
    let (w, scales) = cpu::quantize_rows_i8(&activations(&mut seed, n * k), k);
    let pool = pool(2);
    let mut g = c.benchmark_group(format!("int8_head_{n}x{k}"));
    for tokens in [1, 4, 8, 256] {
        let x = activations(&mut seed, tokens * k);
        g.throughput(Throughput::Elements((tokens * n * k) as u64));
        g.bench_function(format!("{}/tokens{tokens}/t2", isa.name()), |b| {
            b.iter(|| pool.install(|| black_box(cpu::int8_matmul(&x, tokens, &w, &scales, k, isa))))
        });
    }
}

/// The whole BitLinear for the 4 tokens of a 4-stream decode step (quantization, tiles, rescale, threads) on
/// 6912 × 2560 (gate or up of 2B-4T): one matrix (4.4 MB, in L3 after the first pass) and 16 in turn (71 MB,
/// streamed from memory like a decode step's weights), on 1 and 2 threads. Throughput counts multiply-adds;
/// against `ternary_tiles_in_cache` it shows what the threads' split and the memory cost.
fn ternary_matmul_tokens4(c: &mut Criterion) {
    let isa = Isa::detect();
    let (n, k) = (6912, 2560);
    let shape = TernaryShape { n, k, block: k };
    let mut seed = 9;
    let x = activations(&mut seed, 4 * k);
    let scales = vec![0.5f32; n];
    let mut g = c.benchmark_group(format!("ternary_matmul_tokens4_{n}x{k}"));
    g.throughput(Throughput::Elements((4 * n * k) as u64));
    for count in [1, 16] {
        let ws: Vec<Vec<u32>> = (0..count)
            .map(|_| (0..n * words_per_row(k)).map(|_| lcg(&mut seed)).collect())
            .collect();
        for threads in [1, 2] {
            let pool = pool(threads);
            g.bench_function(format!("matrices{count}/t{threads}"), |b| {
                // Timed inside the pool, as the engine calls it: `install` per call adds a hand-off to the pool.
                b.iter_custom(|iters| {
                    pool.install(|| {
                        let start = Instant::now();
                        for w in ws.iter().cycle().take(iters as usize) {
                            black_box(cpu::ternary_matmul_i8(&x, 4, w, &scales, shape, isa));
                        }
                        start.elapsed()
                    })
                })
            });
        }
    }
}

/// Choosing a token from 2B-4T's 128,256 logits, which a decode step does once per stream on the engine's thread
/// while the workers wait: greedy, llama-server's defaults (temperature 0.8, top-k 40, top-p 0.95, min-p 0.05,
/// what the server and the Python package use unless told), temperature alone and top-p alone.
fn sampling(c: &mut Criterion) {
    let mut seed = 23;
    // spread evenly over 16 nats: flatter than a trained model's, so the filters keep more than they would there
    let logits: Vec<f32> = activations(&mut seed, 128_256)
        .iter()
        .map(|x| 16.0 * x)
        .collect();
    let mut g = c.benchmark_group("sampling_128256");
    let configs = [
        ("greedy", 0.0, 0, 1.0, 0.0),
        ("server_defaults", 0.8, 40, 0.95, 0.05),
        ("temperature", 0.8, 0, 1.0, 0.0),
        ("top_p", 0.8, 0, 0.95, 0.0),
    ];
    for (name, temperature, top_k, top_p, min_p) in configs {
        let mut sampler = Sampler::new(SamplerConfig {
            temperature,
            top_k,
            top_p,
            min_p,
            ..Default::default()
        });
        let mut row = logits.clone();
        g.bench_function(name, |b| {
            b.iter(|| {
                row.copy_from_slice(&logits);
                black_box(sampler.sample(&mut row, &[]))
            })
        });
    }
}

/// JSON mode's vocabulary-wide check (run when the sampled token does not fit) on Llama 3's 128,256 tokens, from
/// llama.cpp's `ggml-vocab-llama-bpe.gguf` in `$BITNET_LLAMACPP_MODELS`: after `{` (few tokens fit) and inside
/// a string (most do), in JSON mode and under a JSON schema (and in a string with a `pattern`, a `date-time` and an
/// `email`); under 32 tools while a call's name is written (32
/// readings) and in a text answer; under llama.cpp's `json.gbnf` as a GBNF grammar (again and first in a request,
/// before its steps are kept); and sorting the vocabulary, once per model.
fn json_mode(c: &mut Criterion) {
    let Some(dir) = std::env::var_os("BITNET_LLAMACPP_MODELS") else {
        eprintln!("json_mode skipped: set BITNET_LLAMACPP_MODELS to llama.cpp's models/");
        return;
    };
    let path = std::path::Path::new(&dir).join("ggml-vocab-llama-bpe.gguf");
    let tok = Tokenizer::from_gguf(&bitnet_gguf::GgufFile::open(path).unwrap()).unwrap();
    let mut g = c.benchmark_group("json_mode_128256");
    g.bench_function("sort_vocabulary", |b| b.iter(|| SortedVocab::new(&tok)));
    let mut row = vec![0.0f32; tok.vocab_size()];
    let schema = serde_json::json!({"type": "object", "properties": {
        "mail": {"type": "string", "pattern": "^[a-z.]+@[a-z]+\\.[a-z]{2,3}$"},
        "when": {"type": "string", "format": "date-time"}, "to": {"type": "string", "format": "email"},
        "name": {"type": "string"}, "mood": {"enum": ["merry", "sad"]}, "age": {"type": "integer"}},
        "required": ["name", "mood", "age"]});
    let schema = OutputFormat::JsonSchema(std::sync::Arc::new(Schema::compile(&schema).unwrap()));
    let tools: Vec<_> = (0..32)
        .map(|i| serde_json::json!({"type": "function", "function": {"name": format!("get_{i}"),
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}}))
        .collect();
    let tools = Tools::from_request(Some(&tools.into()), None, None)
        .unwrap()
        .unwrap()
        .format(&OutputFormat::Text)
        .unwrap();
    // llama.cpp's own JSON grammar, followed as a GBNF grammar
    let json_gbnf = std::path::Path::new(&dir).join("../grammars/json.gbnf");
    let grammar = OutputFormat::grammar(&std::fs::read_to_string(json_gbnf).unwrap()).unwrap();
    for (name, format, text) in [
        ("mask_after_brace", &OutputFormat::JsonObject, "{"),
        (
            "mask_in_string",
            &OutputFormat::JsonObject,
            r#"{"name": "Ro"#,
        ),
        ("schema_mask_after_brace", &schema, "{"),
        ("schema_mask_in_string", &schema, r#"{"name": "Ro"#),
        ("schema_mask_in_pattern", &schema, r#"{"mail": "ro"#),
        (
            "schema_mask_in_format_date_time",
            &schema,
            r#"{"when": "2024-0"#,
        ),
        ("schema_mask_in_format_email", &schema, r#"{"to": "ro"#),
        // 32 tools: all 32 calls are open while the name is written; one reading in a text answer
        (
            "tools32_mask_in_name",
            &tools,
            r#"{"tool_call": {"name": "get"#,
        ),
        ("tools32_mask_in_answer", &tools, r#"{"response": "Ro"#),
        ("grammar_json_gbnf_mask_after_brace", &grammar, "{"),
        (
            "grammar_json_gbnf_mask_in_string",
            &grammar,
            r#"{"name": "Ro"#,
        ),
    ] {
        let mut constraint = FormatConstraint::new(format, &tok).unwrap();
        for id in tok.encode(text, false).unwrap() {
            assert!(constraint.accept(id), "{name}: {text:?} does not fit");
        }
        g.bench_function(name, |b| b.iter(|| black_box(constraint.mask(&mut row))));
    }
    // a grammar's first check in a request, before any step is kept
    let fresh = || {
        let mut constraint = FormatConstraint::new(&grammar, &tok).unwrap();
        for id in tok.encode(r#"{"name": "Ro"#, false).unwrap() {
            assert!(constraint.accept(id));
        }
        constraint
    };
    g.bench_function("grammar_json_gbnf_first_mask_in_string", |b| {
        b.iter_batched(
            fresh,
            |mut c| black_box(c.mask(&mut row)),
            criterion::BatchSize::LargeInput,
        )
    });
}

criterion_group! {
    name = kernels;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(4));
    targets = ternary_tiles_in_cache, prefill_kernels, cached_attention, int8_head, ternary_matmul_tokens4, sampling, json_mode
}
criterion_main!(kernels);
