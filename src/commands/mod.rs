//! One module per subcommand.

pub mod bench;
pub mod info;
pub mod logits;
pub mod perplexity;
pub mod run;
pub mod synth;
pub mod tokenize;
