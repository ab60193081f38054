//! Sampling and stopping options shared by `run`, `run-batch` and `chat`.

use anyhow::Context;
use bitnet_burn::text::format::OutputFormat;
use bitnet_burn::text::generate::GenerateOptions;
use bitnet_burn::text::sampling::SamplerConfig;
use bitnet_burn::ActQuant;

/// How tokens are chosen and when generation stops.
#[derive(clap::Args, Clone, Debug)]
pub struct SamplingArgs {
    /// Most tokens to generate.
    #[arg(short = 'n', long, default_value_t = 128)]
    pub max_tokens: usize,
    /// Sampling temperature (0: greedy).
    #[arg(long, default_value_t = 0.0)]
    pub temp: f32,
    /// Keep the k most likely tokens (0: all).
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// Nucleus sampling threshold (1: off).
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// Drop tokens below this fraction of the best one's probability.
    #[arg(long, default_value_t = 0.0)]
    pub min_p: f32,
    /// Penalty for recently generated tokens (1: off).
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// Random seed.
    #[arg(short, long, default_value_t = 0)]
    pub seed: u64,
    /// Stop when this text appears (repeatable).
    #[arg(long)]
    pub stop: Vec<String>,
    /// JSON mode: write one JSON object and stop when it closes (only tokens that keep it valid are sampled).
    #[arg(long)]
    pub json_object: bool,
    /// Write one JSON object that this JSON Schema allows (as OpenAI's structured outputs; llama.cpp's flag).
    #[arg(short = 'j', long, conflicts_with = "json_object")]
    pub json_schema: Option<String>,
    /// The same, with the schema read from a file.
    #[arg(long, conflicts_with_all = ["json_object", "json_schema"])]
    pub json_schema_file: Option<std::path::PathBuf>,
    /// Write text in this GBNF grammar's language (its rule `root`; llama.cpp's flag and format).
    #[arg(long, conflicts_with_all = ["json_object", "json_schema", "json_schema_file"])]
    pub grammar: Option<String>,
    /// The same, with the grammar read from a file (llama.cpp's `grammars/*.gbnf`).
    #[arg(long, conflicts_with_all = ["json_object", "json_schema", "json_schema_file", "grammar"])]
    pub grammar_file: Option<std::path::PathBuf>,
}

impl SamplingArgs {
    /// Generation options with these settings; an error names a schema that does not parse or compile.
    pub fn options(&self, act: ActQuant, bos: bool) -> anyhow::Result<GenerateOptions> {
        Ok(GenerateOptions {
            max_new_tokens: self.max_tokens,
            act,
            sampler: SamplerConfig {
                temperature: self.temp,
                top_k: self.top_k,
                top_p: self.top_p,
                min_p: self.min_p,
                repeat_penalty: self.repeat_penalty,
                seed: self.seed,
                format: self.format()?,
                ..Default::default()
            },
            stop_strings: self.stop.clone(),
            bos,
        })
    }

    /// JSON mode, a schema's objects, a grammar's language, or text.
    fn format(&self) -> anyhow::Result<OutputFormat> {
        let grammar = match (&self.grammar, &self.grammar_file) {
            (Some(text), _) => Some(text.clone()),
            (None, Some(path)) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading the grammar {}", path.display()))?,
            ),
            (None, None) => None,
        };
        if let Some(grammar) = grammar {
            return OutputFormat::grammar(&grammar).context("the grammar");
        }
        let text = match (&self.json_schema, &self.json_schema_file) {
            (Some(text), _) => text.clone(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .with_context(|| format!("reading the JSON schema {}", path.display()))?,
            (None, None) => return Ok(OutputFormat::json_object_if(self.json_object)),
        };
        let schema: serde_json::Value =
            serde_json::from_str(&text).context("the JSON schema is not JSON")?;
        Ok(OutputFormat::json_schema(&schema)?)
    }
}
