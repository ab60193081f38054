//! Sampling and stopping options shared by `run`, `run-batch` and `chat`.

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
}

impl SamplingArgs {
    /// Generation options with these settings.
    pub fn options(&self, act: ActQuant, bos: bool) -> GenerateOptions {
        GenerateOptions {
            max_new_tokens: self.max_tokens,
            act,
            sampler: SamplerConfig {
                temperature: self.temp,
                top_k: self.top_k,
                top_p: self.top_p,
                min_p: self.min_p,
                repeat_penalty: self.repeat_penalty,
                seed: self.seed,
                format: OutputFormat::json_object_if(self.json_object),
                ..Default::default()
            },
            stop_strings: self.stop.clone(),
            bos,
        }
    }
}
