//! One module per subcommand.

pub mod bench;
pub mod chat;
pub mod compat_check;
pub mod convert;
pub mod download;
pub mod info;
pub mod logits;
pub mod perplexity;
pub mod run;
pub mod run_batch;
pub mod serve;
pub mod synth;
pub mod tokenize;
