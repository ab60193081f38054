//! Text generation: tokenize, prefill the prompt through the KV cache, then sample one token at a time,
//! streaming text that never splits a UTF-8 character or shows part of a stop string.

use std::time::{Duration, Instant};

use bitnet_kernels_cubecl::TernaryBackend;

use crate::error::ForwardError;
use crate::nn::ActQuant;
use crate::nn::BitNet;
use crate::nn::KvCache;
use crate::text::format::FormatConstraint;
use crate::text::sampling::{Sampler, SamplerConfig};
use crate::text::tokenizer::{Tokenizer, TokenizerError};

/// What to generate.
#[derive(Clone, Debug)]
pub struct GenerateOptions {
    /// Upper bound on new tokens.
    pub max_new_tokens: usize,
    /// Activation quantization (BitNet's int8 by default).
    pub act: ActQuant,
    /// Sampling settings.
    pub sampler: SamplerConfig,
    /// Text that ends generation (not included in the output).
    pub stop_strings: Vec<String>,
    /// Prepend BOS to the prompt when the model wants it.
    pub bos: bool,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            max_new_tokens: 128,
            act: ActQuant::Int8,
            sampler: SamplerConfig::default(),
            stop_strings: Vec::new(),
            bos: true,
        }
    }
}

/// Why generation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// `max_new_tokens` were generated.
    MaxTokens,
    /// An end-of-text or end-of-turn token.
    StopToken(u32),
    /// A stop string appeared.
    StopString(String),
    /// The KV cache (or the model's context) is full.
    ContextFull,
    /// The text is whole in the requested format (JSON mode's object closed).
    FormatComplete,
}

impl StopReason {
    /// OpenAI's `finish_reason`: `stop` for a stop token or string, `length` for a length or context limit.
    pub fn finish_reason(&self) -> &'static str {
        match self {
            Self::StopToken(_) | Self::StopString(_) | Self::FormatComplete => "stop",
            Self::MaxTokens | Self::ContextFull => "length",
        }
    }
}

/// Time spent in each phase.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Timings {
    /// Tokenizing the prompt.
    pub tokenize: Duration,
    /// Running the prompt through the model.
    pub prefill: Duration,
    /// Generating tokens after the first.
    pub decode: Duration,
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// Generated tokens.
    pub generated_tokens: usize,
}

impl Timings {
    /// Prompt tokens per second.
    pub fn prefill_tok_s(&self) -> f64 {
        self.prompt_tokens as f64 / self.prefill.as_secs_f64().max(1e-9)
    }

    /// Generated tokens per second (each decode step produces one token).
    pub fn decode_tok_s(&self) -> f64 {
        self.generated_tokens.saturating_sub(1) as f64 / self.decode.as_secs_f64().max(1e-9)
    }
}

/// The result of [`generate`].
#[derive(Clone, Debug)]
pub struct Generation {
    /// Prompt ids (BOS included).
    pub prompt_ids: Vec<u32>,
    /// Generated ids (the stop token included).
    pub ids: Vec<u32>,
    /// Generated text (up to a stop string).
    pub text: String,
    /// Why it ended.
    pub stop: StopReason,
    /// Per-phase timings.
    pub timings: Timings,
}

/// Why generation failed.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// The prompt has no tokens: empty, and no BOS to start from.
    #[error("empty prompt: give some text to continue (an empty one runs from BOS where the model adds one)")]
    EmptyPrompt,
    /// The model refused the input (context overflow, bad id).
    #[error(transparent)]
    Forward(#[from] ForwardError),
    /// The tokenizer failed.
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    /// The requested format allows no token of the vocabulary next.
    #[error("no token of the vocabulary can continue the text in the requested format")]
    NoTokenFits,
}

/// Continues `prompt` after what `cache` holds, calling `on_text` with each new piece of text. An empty prompt
/// runs from BOS alone where `opts.bos` adds one (as llama.cpp and llama-server do).
pub fn generate<B: TernaryBackend>(
    model: &BitNet<B>,
    tokenizer: &Tokenizer,
    cache: &mut KvCache<B>,
    prompt: &str,
    opts: &GenerateOptions,
    on_text: impl FnMut(&str),
) -> Result<Generation, GenerateError> {
    let start = Instant::now();
    let prompt_ids = tokenizer.encode(prompt, opts.bos)?;
    let tokenize = start.elapsed();
    let mut g = generate_ids(model, tokenizer, cache, prompt_ids, opts, on_text)?;
    g.timings.tokenize = tokenize;
    Ok(g)
}

/// Continues the token ids `prompt_ids` after what `cache` holds (the ids are fed as they are: no BOS is added).
pub fn generate_ids<B: TernaryBackend>(
    model: &BitNet<B>,
    tokenizer: &Tokenizer,
    cache: &mut KvCache<B>,
    prompt_ids: Vec<u32>,
    opts: &GenerateOptions,
    mut on_text: impl FnMut(&str),
) -> Result<Generation, GenerateError> {
    let mut generator = Generator::new(tokenizer, prompt_ids, opts)?;
    let mut timings = Timings {
        prompt_tokens: generator.prompt_ids().len(),
        ..Default::default()
    };
    let start = Instant::now();
    let mut stop = generator.step(model, tokenizer, cache, &mut on_text)?;
    timings.prefill = start.elapsed();
    let decode_start = Instant::now();
    let stop = loop {
        match stop {
            Some(stop) => break stop,
            None => stop = generator.step(model, tokenizer, cache, &mut on_text)?,
        }
    };
    timings.decode = decode_start.elapsed();
    let prompt_ids = generator.prompt_ids().to_vec();
    let (ids, text, stop) = generator.finish(tokenizer, stop, &mut on_text)?;
    timings.generated_tokens = ids.len();
    Ok(Generation {
        prompt_ids,
        ids,
        text,
        stop,
        timings,
    })
}

/// One generation over one KV cache, a token per [`Generator::step`]: for callers that must return between
/// tokens (a browser tab, an async iterator); [`generate_ids`] runs one to the end.
pub struct Generator {
    prompt_ids: Vec<u32>,
    /// Leading prompt ids already in the cache (not run again).
    cached: usize,
    /// Whether the prompt has been run.
    prefilled: bool,
    act: ActQuant,
    continuation: Continuation,
}

impl Generator {
    /// A generation continuing `prompt_ids` (fed as they are) as `opts` says.
    pub fn new(
        tokenizer: &Tokenizer,
        prompt_ids: Vec<u32>,
        opts: &GenerateOptions,
    ) -> Result<Self, GenerateError> {
        if prompt_ids.is_empty() {
            return Err(GenerateError::EmptyPrompt);
        }
        let continuation = Continuation::new(
            tokenizer,
            &prompt_ids,
            opts.max_new_tokens,
            opts.sampler.clone(),
            opts.stop_strings.clone(),
        );
        Ok(Self {
            prompt_ids,
            cached: 0,
            prefilled: false,
            act: opts.act,
            continuation,
        })
    }

    /// The same generation over a cache that already holds the prompt's first `cached` ids (a previous
    /// generation's, e.g. the last turn of a chat): only the rest are run, always at least the last id (whose
    /// logits the first token is sampled from).
    pub fn with_cached(mut self, cached: usize) -> Self {
        self.cached = cached.min(self.prompt_ids.len() - 1);
        self
    }

    /// The prompt's ids.
    pub fn prompt_ids(&self) -> &[u32] {
        &self.prompt_ids
    }

    /// Leading prompt ids that were already in the cache.
    pub fn cached(&self) -> usize {
        self.cached
    }

    /// The prompt and the tokens generated so far: what the cache holds once each has been run (all but the
    /// last sampled one).
    pub fn tokens(&self) -> &[u32] {
        self.continuation.history()
    }

    /// Tokens generated so far.
    pub fn generated(&self) -> usize {
        self.continuation.generated()
    }

    /// Runs the model once (over the prompt the first time, then over the last token) and samples the next
    /// token, passing the text it completes to `on_text`; returns why generation ends if it does (then call
    /// [`Generator::finish`]).
    pub fn step<B: TernaryBackend>(
        &mut self,
        model: &BitNet<B>,
        tokenizer: &Tokenizer,
        cache: &mut KvCache<B>,
        on_text: &mut impl FnMut(&str),
    ) -> Result<Option<StopReason>, GenerateError> {
        let input = match self.input(model, cache) {
            Ok(input) => input,
            Err(stop) => return Ok(Some(stop)),
        };
        let mut logits = to_vec(model.forward_last(&[input], cache, self.act)?);
        self.accept(tokenizer, &mut logits, on_text)
    }

    /// [`Generator::step`] in two halves, for callers that read the logits back themselves (asynchronously, in a
    /// browser): the ids to run through `model` next, or why generation ends first (the cache is full).
    pub fn input<B: TernaryBackend>(
        &self,
        model: &BitNet<B>,
        cache: &KvCache<B>,
    ) -> Result<Vec<u32>, StopReason> {
        if !self.prefilled {
            return Ok(self.prompt_ids[self.cached..].to_vec());
        }
        if cache.len() >= cache.max_len().min(model.config.context_length) {
            return Err(StopReason::ContextFull);
        }
        Ok(vec![self.continuation.last()])
    }

    /// The activation quantization to run the model with.
    pub fn act(&self) -> ActQuant {
        self.act
    }

    /// The second half of [`Generator::step`]: samples from the logits of the last position of
    /// [`Generator::input`] (modified in place).
    pub fn accept(
        &mut self,
        tokenizer: &Tokenizer,
        logits: &mut [f32],
        on_text: &mut impl FnMut(&str),
    ) -> Result<Option<StopReason>, GenerateError> {
        self.prefilled = true;
        self.continuation.step(tokenizer, logits, on_text)
    }

    /// Ends the generation for `stop` (see [`Continuation::finish`]).
    pub fn finish(
        self,
        tokenizer: &Tokenizer,
        stop: StopReason,
        on_text: &mut impl FnMut(&str),
    ) -> Result<(Vec<u32>, String, StopReason), GenerateError> {
        self.continuation.finish(tokenizer, stop, on_text)
    }
}

/// One sequence being generated, whatever runs the model: samples each next token from the logits it is given,
/// turns the ids into text as that text becomes final (never splitting a UTF-8 character or showing part of a
/// stop string) and says when to stop. [`generate_ids`] drives one; a batched engine drives many.
pub struct Continuation {
    sampler: Sampler,
    /// The tokens the format allows, unless the text is free.
    format: Option<FormatConstraint>,
    history: Vec<u32>,
    ids: Vec<u32>,
    stop_ids: Vec<u32>,
    max_new_tokens: usize,
    detok: Detokenizer,
    stream: TextStream,
}

impl Continuation {
    /// A continuation of `prompt_ids` (the penalties see them) of at most `max_new_tokens` tokens, sampled by
    /// `sampler`, ending at any of `stop_strings`.
    pub fn new(
        tokenizer: &Tokenizer,
        prompt_ids: &[u32],
        max_new_tokens: usize,
        sampler: SamplerConfig,
        stop_strings: Vec<String>,
    ) -> Self {
        Self {
            format: FormatConstraint::new(&sampler.format, tokenizer),
            sampler: Sampler::new(sampler),
            history: prompt_ids.to_vec(),
            ids: Vec::new(),
            stop_ids: tokenizer.stop_ids(),
            max_new_tokens,
            detok: Detokenizer::default(),
            stream: TextStream::new(stop_strings),
        }
    }

    /// Samples the next token from `logits` (modified in place), passes the text it completes to `on_text`, and
    /// returns why generation ends if it does (a stop token or string, or the length limit); then call
    /// [`Continuation::finish`], else feed [`Continuation::last`] to the model for the next logits.
    pub fn step(
        &mut self,
        tokenizer: &Tokenizer,
        logits: &mut [f32],
        on_text: &mut impl FnMut(&str),
    ) -> Result<Option<StopReason>, GenerateError> {
        if self.ids.len() >= self.max_new_tokens {
            return Ok(Some(StopReason::MaxTokens));
        }
        self.sampler.adjust(logits, &self.history);
        let mut next = self.sampler.choose(logits);
        if let Some(format) = &mut self.format {
            if !format.accept(next) {
                if !format.mask(logits) {
                    return Err(GenerateError::NoTokenFits);
                }
                next = self.sampler.choose(logits);
                format.accept(next);
            }
        }
        self.ids.push(next);
        self.history.push(next);
        if self.stop_ids.contains(&next) {
            return Ok(Some(StopReason::StopToken(next)));
        }
        let piece = self.detok.next(tokenizer, &self.ids)?;
        if let Some(s) = self.stream.push(&piece, on_text) {
            return Ok(Some(StopReason::StopString(s)));
        }
        if self
            .format
            .as_ref()
            .is_some_and(FormatConstraint::is_complete)
        {
            return Ok(Some(StopReason::FormatComplete));
        }
        Ok((self.ids.len() >= self.max_new_tokens).then_some(StopReason::MaxTokens))
    }

    /// Generation ends only at the length limit or a stop string, not at the model's end-of-text tokens (what
    /// benchmarks need, and llama-server's `ignore_eos`).
    pub fn ignoring_stop_tokens(mut self) -> Self {
        self.stop_ids.clear();
        self
    }

    /// The last sampled token.
    pub fn last(&self) -> u32 {
        *self.ids.last().expect("a token was sampled")
    }

    /// Tokens generated so far.
    pub fn generated(&self) -> usize {
        self.ids.len()
    }

    /// The prompt and the tokens generated so far.
    pub fn history(&self) -> &[u32] {
        &self.history
    }

    /// Ends generation for `stop`: passes any text held back to `on_text` (unless it completes a stop string)
    /// and returns the generated ids (the stop token included), their text up to any stop string, and the final
    /// reason.
    pub fn finish(
        mut self,
        tokenizer: &Tokenizer,
        mut stop: StopReason,
        on_text: &mut impl FnMut(&str),
    ) -> Result<(Vec<u32>, String, StopReason), GenerateError> {
        if !matches!(stop, StopReason::StopString(_)) {
            // A stop token ends the text; it is not part of it.
            let shown = match stop {
                StopReason::StopToken(_) => &self.ids[..self.ids.len() - 1],
                _ => &self.ids[..],
            };
            match self
                .stream
                .push(&self.detok.flush(tokenizer, shown)?, on_text)
            {
                Some(s) => stop = StopReason::StopString(s),
                None => self.stream.finish(on_text),
            }
        }
        let kept: Vec<u32> = self
            .ids
            .iter()
            .copied()
            .filter(|id| !self.stop_ids.contains(id))
            .collect();
        let text = tokenizer.decode(&kept)?;
        let text = match &stop {
            StopReason::StopString(s) => text
                .find(s.as_str())
                .map_or(text.clone(), |i| text[..i].to_string()),
            _ => text,
        };
        Ok((self.ids, text, stop))
    }
}

fn to_vec<B: TernaryBackend>(t: burn::tensor::Tensor<B, 2>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .into_vec()
        .expect("f32 logits")
}

/// Turns generated ids into text a step at a time without decoding them all again: decodes a window from the
/// previous step's boundary and keeps what the newest ids added (a SentencePiece decode of a window drops the
/// space its first piece starts with; both decodes start at the same id, so the difference is right). Holds back
/// ids that end in an incomplete UTF-8 sequence (decoded as U+FFFD) or in a run of byte-fallback pieces (whose
/// text depends on the whole run) until it completes, so windows never split a run.
#[derive(Default)]
struct Detokenizer {
    /// Where the decode window starts.
    prefix: usize,
    /// Ids up to here have been turned into text.
    read: usize,
}

impl Detokenizer {
    /// The text `ids` (all generated so far) add to what earlier calls returned, or nothing while they end in
    /// a byte run or an incomplete UTF-8 sequence.
    fn next(&mut self, tokenizer: &Tokenizer, ids: &[u32]) -> Result<String, GenerateError> {
        if ids.last().is_some_and(|&id| tokenizer.is_byte_piece(id)) {
            return Ok(String::new());
        }
        let window = tokenizer.decode(&ids[self.prefix..])?;
        if window.ends_with('\u{FFFD}') {
            return Ok(String::new());
        }
        self.take(tokenizer, ids, window)
    }

    /// The text of ids still held back (an incomplete UTF-8 sequence at the end, as U+FFFD).
    fn flush(&mut self, tokenizer: &Tokenizer, ids: &[u32]) -> Result<String, GenerateError> {
        if self.read == ids.len() {
            return Ok(String::new());
        }
        let window = tokenizer.decode(&ids[self.prefix..])?;
        self.take(tokenizer, ids, window)
    }

    /// What `window`, the decode of `ids[prefix..]`, adds to the ids read before; moves the window on.
    fn take(
        &mut self,
        tokenizer: &Tokenizer,
        ids: &[u32],
        window: String,
    ) -> Result<String, GenerateError> {
        let before = tokenizer.decode(&ids[self.prefix..self.read])?;
        let new = match window.strip_prefix(before.as_str()) {
            Some(new) => new.to_string(),
            // Decoding is not prefix-stable here (a normalizer joined the pieces): diff whole decodes, once.
            None => {
                let whole = tokenizer.decode(ids)?;
                let old = tokenizer.decode(&ids[..self.read])?;
                whole.get(old.len()..).unwrap_or_default().to_string()
            }
        };
        (self.prefix, self.read) = (self.read, ids.len());
        Ok(new)
    }
}

/// Emits text as it becomes final, holding back any tail that could start a stop string; looks for stop strings
/// only in text not yet emitted (a stop cannot start earlier: that text was not the start of one).
struct TextStream {
    stops: Vec<String>,
    emitted: usize,
    text: String,
}

impl TextStream {
    fn new(stops: Vec<String>) -> Self {
        Self {
            stops,
            emitted: 0,
            text: String::new(),
        }
    }

    /// Appends `piece` to the text; returns the stop string if one appeared.
    fn push(&mut self, piece: &str, on_text: &mut impl FnMut(&str)) -> Option<String> {
        if piece.is_empty() {
            return None;
        }
        self.text.push_str(piece);
        let pending = &self.text[self.emitted..];
        let found = self
            .stops
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| pending.find(s.as_str()).map(|at| (at, s)))
            .min();
        let (end, stop) = match found {
            Some((at, s)) => (self.emitted + at, Some(s.clone())),
            None => {
                let hold = self
                    .stops
                    .iter()
                    .map(|s| longest_prefix_suffix(pending, s))
                    .max()
                    .unwrap_or(0);
                (self.text.len() - hold, None)
            }
        };
        if end > self.emitted {
            on_text(&self.text[self.emitted..end]);
            self.emitted = end;
        }
        if stop.is_some() {
            self.text.truncate(self.emitted);
        }
        stop
    }

    /// Emits what was held back (generation ended without a stop string).
    fn finish(&mut self, on_text: &mut impl FnMut(&str)) {
        if self.text.len() > self.emitted {
            on_text(&self.text[self.emitted..]);
            self.emitted = self.text.len();
        }
    }
}

/// Length of the longest suffix of `text` that is a proper prefix of `stop`.
fn longest_prefix_suffix(text: &str, stop: &str) -> usize {
    (1..stop.len())
        .rev()
        .find(|&n| stop.is_char_boundary(n) && text.ends_with(&stop[..n]))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::{Detokenizer, TextStream};
    use crate::text::tokenizer::Tokenizer;

    /// An incomplete UTF-8 sequence is held back (with the text before it in the window) until it completes,
    /// and flushed as U+FFFD if it never does.
    #[test]
    fn incomplete_utf8_is_held_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tiny.gguf");
        let config = bitnet_gguf::ModelConfig::preset("tiny").unwrap();
        crate::io::synth::write_synthetic(&path, &config, bitnet_gguf::GgmlType::F32, 1).unwrap();
        let tok = Tokenizer::from_gguf(&bitnet_gguf::GgufFile::open(&path).unwrap()).unwrap();
        // The synthetic vocabulary's first 256 ids are the bytes: "é" is 0xC3 0xA9.
        let ids = [u32::from(b'a'), 0xC3, 0xA9, u32::from(b'b'), 0xC3];
        let mut d = Detokenizer::default();
        let pieces: Vec<String> = (1..=ids.len())
            .map(|n| d.next(&tok, &ids[..n]).unwrap())
            .collect();
        assert_eq!(pieces, ["a", "", "\u{e9}", "b", ""]);
        assert_eq!(d.flush(&tok, &ids).unwrap(), "\u{FFFD}");
    }

    fn run(pieces: &[&str], stops: &[&str]) -> (Vec<String>, Option<String>) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut s = TextStream::new(stops);
        let mut out = Vec::new();
        for p in pieces {
            if let Some(stop) = s.push(p, &mut |t: &str| out.push(t.to_string())) {
                return (out, Some(stop));
            }
        }
        s.finish(&mut |t: &str| out.push(t.to_string()));
        (out, None)
    }

    #[test]
    fn stop_strings_are_never_shown_even_in_part() {
        let (out, stop) = run(&["Hello", " Us", "er: hi"], &["User:"]);
        assert_eq!(out.concat(), "Hello ");
        assert_eq!(stop.as_deref(), Some("User:"));
        let (out, stop) = run(&["a", "U", "x"], &["User:"]);
        assert_eq!((out.concat().as_str(), stop), ("aUx", None));
    }
}
