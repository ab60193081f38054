//! Chat with a BitNet b1.58 GGUF in its chat format, on the backend picked by cargo feature (a type parameter);
//! the KV cache is kept between turns. Type `/reset` to start over, an empty line or end of input to quit.
//!
//! `cargo run --release --example chat [--features wgpu|cuda] -- --model FILE`
use std::io::{BufRead, Write};

use anyhow::Result;
use bitnet_burn::text::chat::{Chat, ChatTemplate};
use bitnet_burn::text::generate::GenerateOptions;
use bitnet_burn::{load, text::tokenizer::Tokenizer};
use bitnet_gguf::GgufFile;
use clap::Parser;

mod common;
use common::{Backend, DEFAULT_MODEL};

#[derive(Parser)]
struct Args {
    /// GGUF model (default: the tiny test model beside the repository).
    #[arg(long, default_value = DEFAULT_MODEL)]
    model: String,
    /// A system message.
    #[arg(long)]
    system: Option<String>,
    #[arg(short = 'n', long, default_value_t = 256)]
    max_tokens: usize,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let device = Default::default();
    let model = load::<Backend>(&args.model, &device)?;
    let file = GgufFile::open(&args.model)?;
    let tokenizer = Tokenizer::from_gguf(&file)?;
    let mut chat = Chat::new(ChatTemplate::from_gguf(&file, &tokenizer)?, args.system);
    let mut cache = model.new_cache(1, model.config.context_length);
    let opts = GenerateOptions {
        max_new_tokens: args.max_tokens,
        ..Default::default()
    };
    for line in std::io::stdin().lock().lines() {
        match line?.trim() {
            "" => break,
            "/reset" => chat.reset(&mut cache),
            text => {
                chat.send(&model, &tokenizer, &mut cache, text, &opts, |piece| {
                    print!("{piece}");
                    let _ = std::io::stdout().flush();
                })?;
                println!();
            }
        }
    }
    Ok(())
}
