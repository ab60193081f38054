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

/// How many leading items `a` and `b` share (a cache's tokens and a new prompt's, two tokens' bytes).
pub fn shared_prefix<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}
