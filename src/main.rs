//! The `bitnet` command-line tool: inspect GGUF files and run BitNet b1.58 models on any compiled-in backend.

mod allocator;
mod backend;
mod commands;
mod hub_args;
mod model_args;
mod output;
mod sampling_args;
mod serve;
mod text_args;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// BitNet b1.58 (ternary) language models in Burn.
#[derive(Parser)]
#[command(name = "bitnet", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Architecture, config, tensor table, tokenizer and validation verdict of a GGUF file.
    Info(commands::info::Args),
    /// Can this file run here, and why not: published checksum, structure, architecture, tokenizer, a real load.
    #[command(alias = "verify")]
    CompatCheck(commands::compat_check::Args),
    /// Dump logits for token ids as a float32 .npy [positions, vocab], for cross-checks with other engines.
    Logits(commands::logits::Args),
    /// Continue a prompt: streams the text, then prints prefill and decode tokens/s.
    Run(commands::run::Args),
    /// Prompts from JSONL in, one JSON result per line out (the model loaded once).
    RunBatch(commands::run_batch::Args),
    /// Interactive chat in the model's chat format, keeping the KV cache between turns (/reset, /exit).
    Chat(commands::chat::Args),
    /// Prefill and decode tokens/s over repetitions (`--json` for machines).
    Bench(commands::bench::Args),
    /// An OpenAI-compatible HTTP server decoding many requests together (continuous batching).
    Serve(commands::serve::Args),
    /// Perplexity on a text file, windowed like llama.cpp's llama-perplexity.
    Perplexity(commands::perplexity::Args),
    /// Text to token ids with the model's tokenizer (one per line, or --json).
    Tokenize(commands::tokenize::Args),
    /// Download a model from the Hugging Face Hub into its shared cache (resumed, retried, checksum-verified).
    Download(commands::download::Args),
    /// Convert a transformers BitNet checkpoint (packed ternary or float masters) to GGUF with its tokenizer.
    Convert(commands::convert::Args),
    /// Write a synthetic BitNet GGUF with a real shape and random ternary weights (deterministic from the seed).
    Synth(commands::synth::Args),
}

fn main() -> ExitCode {
    allocator::keep_freed_memory();
    let cli = Cli::parse_from(commands::serve::long_flags(std::env::args()));
    let result = match cli.command {
        Command::Info(args) => commands::info::run(args),
        Command::CompatCheck(args) => commands::compat_check::run(args),
        Command::Logits(args) => commands::logits::run(args),
        Command::Synth(args) => commands::synth::run(args),
        Command::Convert(args) => commands::convert::run(args),
        Command::Download(args) => commands::download::run(args),
        Command::Tokenize(args) => commands::tokenize::run(args),
        Command::Run(args) => commands::run::run(args),
        Command::RunBatch(args) => commands::run_batch::run(args),
        Command::Chat(args) => commands::chat::run(args),
        Command::Bench(args) => commands::bench::run(args),
        Command::Perplexity(args) => commands::perplexity::run(args),
        Command::Serve(args) => commands::serve::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
