//! `bitnet synth`: write a synthetic BitNet GGUF (real shape, random ternary weights, deterministic seed).

use std::path::PathBuf;

use anyhow::Result;
use bitnet_burn::io::synth::write_synthetic;
use bitnet_gguf::{GgmlType, ModelConfig, PRESETS};
use clap::builder::PossibleValuesParser;
use clap::ValueEnum;

/// Weight storage types.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum WeightType {
    /// bitnet.cpp's I2_S.
    #[value(name = "i2_s")]
    I2S,
    /// llama.cpp's TQ2_0.
    #[value(name = "tq2_0")]
    Tq2,
    /// llama.cpp's TQ1_0.
    #[value(name = "tq1_0")]
    Tq1,
    /// Plain f32 (ternary values).
    F32,
}

/// Arguments of `bitnet synth`.
#[derive(clap::Args)]
pub struct Args {
    /// Model shape: `tiny` (2 layers of width 256), the tiny shape on another family's graph (`tiny-llama`:
    /// Falcon3-1.58bit / Llama3-8B-1.58; `tiny-falcon-e`; `tiny-1bitllm`: bitnet_b1_58-large/3B), `2b4t`
    /// (microsoft/bitnet-b1.58-2B-4T) or `large` (1bitLLM/bitnet_b1_58-large's dimensions).
    #[arg(long, default_value = "tiny", value_parser = PossibleValuesParser::new(PRESETS))]
    shape: String,
    /// Storage type of the linear weights.
    #[arg(long = "type", value_enum, default_value = "i2_s")]
    ty: WeightType,
    /// Random seed (same seed, same file).
    #[arg(short, long, default_value_t = 2025)]
    seed: u64,
    /// Output file.
    #[arg(short, long)]
    output: PathBuf,
}

/// Writes the file.
pub fn run(args: Args) -> Result<()> {
    let shape = ModelConfig::preset(&args.shape).expect("clap accepts presets only");
    let ty = match args.ty {
        WeightType::I2S => GgmlType::I2S,
        WeightType::Tq2 => GgmlType::TQ2_0,
        WeightType::Tq1 => GgmlType::TQ1_0,
        WeightType::F32 => GgmlType::F32,
    };
    write_synthetic(&args.output, &shape, ty, args.seed)?;
    eprintln!(
        "wrote {} ({}, {ty}, seed {})",
        args.output.display(),
        args.shape,
        args.seed
    );
    Ok(())
}
