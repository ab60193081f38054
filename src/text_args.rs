//! Options of the commands that read text (`run`, `run-batch`, `chat`, `perplexity`): the tokenizer and the
//! activation numerics.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use bitnet_burn::text::chat::ChatTemplate;
use bitnet_burn::text::tokenizer::Tokenizer;
use bitnet_burn::ActQuant;

/// Tokenizer and activation options.
#[derive(clap::Args, Clone, Debug)]
pub struct TextArgs {
    /// A tokenizer.json that overrides the model's tokenizer.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    #[command(flatten)]
    pub act: ActArgs,
}

/// Activation numerics of BitLinear.
#[derive(clap::Args, Clone, Debug)]
pub struct ActArgs {
    /// int8: BitNet's per-token int8; float: float activations (to compare with float references); q8k: int8 per
    /// 256-column block, as llama.cpp computes TQ1_0/TQ2_0 files (to compare with llama.cpp token for token).
    #[arg(long, value_enum, default_value_t = Act::Int8)]
    pub act: Act,
    /// Shorthand for `--act float`.
    #[arg(long, conflicts_with = "act")]
    pub float_activations: bool,
}

/// The values of `--act`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    /// Per-token int8 (BitNet b1.58).
    Int8,
    /// Float.
    Float,
    /// Per-256-column-block int8 (llama.cpp's Q8_K).
    Q8k,
}

impl ActArgs {
    /// The activation numerics chosen.
    pub fn act(&self) -> ActQuant {
        match (self.float_activations, self.act) {
            (true, _) | (_, Act::Float) => ActQuant::Float,
            (_, Act::Int8) => ActQuant::Int8,
            (_, Act::Q8k) => ActQuant::Q8K,
        }
    }
}

impl TextArgs {
    /// The activation numerics chosen.
    pub fn act(&self) -> ActQuant {
        self.act.act()
    }

    /// The tokenizer of `model` (a GGUF file, or a checkpoint directory's tokenizer.json) unless overridden.
    pub fn load_tokenizer(&self, model: &Path) -> Result<Tokenizer> {
        load_tokenizer(model, self.tokenizer.as_deref())
    }
}

/// The tokenizer a model file or checkpoint directory describes, or `override_json`.
pub fn load_tokenizer(model: &Path, override_json: Option<&Path>) -> Result<Tokenizer> {
    Ok(match override_json {
        Some(path) => Tokenizer::from_file(path)?,
        None => Tokenizer::for_model(model)?,
    })
}

/// The chat template: `template_file` if given, else the model's (GGUF `tokenizer.chat_template`, or a checkpoint's
/// tokenizer_config.json), else the built-in BitNet format.
pub fn load_chat_template(
    model: &Path,
    template_file: Option<&Path>,
    tokenizer: &Tokenizer,
) -> Result<ChatTemplate> {
    if let Some(path) = template_file {
        let source =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        return Ok(ChatTemplate::new(
            source,
            path.display().to_string(),
            tokenizer,
        )?);
    }
    Ok(ChatTemplate::for_model(model, tokenizer)?)
}
