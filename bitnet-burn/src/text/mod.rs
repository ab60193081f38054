//! Text in and out: the tokenizer, sampling, generation, chat, function calling and perplexity.

#[cfg(feature = "chat")]
pub mod chat;
pub mod format;
pub mod generate;
pub mod logprobs;
pub mod perplexity;
pub mod sampling;
pub mod tokenizer;
pub mod tools;
