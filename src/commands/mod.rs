//! One module per subcommand.

pub mod info;
pub mod logits;
pub mod synth;
