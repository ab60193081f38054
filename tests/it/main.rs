//! Integration tests of the `bitnet` CLI and the library, against the reference fixtures in `../shared/fixtures`:
//! one test binary (each links all of Burn), one module per topic, the shared helpers in `common`.

mod common;

mod chat;
mod chat_templates;
mod cli;
mod convert;
mod default_model;
mod download;
mod embedding;
mod engine;
mod families;
mod gguf_fixtures;
mod grammar;
mod json_mode;
mod llamacpp_vocabs;
mod model_fixtures;
mod perplexity;
mod serve;
mod streaming;
mod synthetic;
mod tokenizer;
mod train_export;
