//! Chat: the model's chat template (Jinja, rendered as transformers' `apply_chat_template` does) and multi-turn
//! conversations that keep the KV cache between turns and feed only what is new.

use bitnet_gguf::GgufFile;
use bitnet_kernels_cubecl::TernaryBackend;
use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Serde, Value};
use minijinja::{context, Environment, Error as JinjaError, ErrorKind as JinjaErrorKind};
use serde::Serialize;

use crate::nn::BitNet;
use crate::nn::KvCache;
use crate::text::generate::{generate_ids, GenerateError, GenerateOptions, Generation};
use crate::text::shared_prefix;
use crate::text::tokenizer::{Tokenizer, TokenizerError};

/// The BitNet b1.58 2B-4T format (`User: …<|eot_id|>Assistant: `), used when a file carries no
/// `tokenizer.chat_template`; `eot_token` is the model's end-of-turn token (or its end-of-text token).
pub const BITNET_TEMPLATE: &str =
    "{% for message in messages %}{% if loop.first %}{{ bos_token }}{% endif %}\
{{ message['role'] | capitalize }}: {{ message['content'] | trim }}{{ eot_token }}{% endfor %}\
{% if add_generation_prompt %}Assistant: {% endif %}";

/// Why a chat turn failed.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// The template does not parse or failed to render.
    #[error("chat template ({origin}): {message}")]
    Template {
        /// Where the template came from.
        origin: String,
        /// What went wrong.
        message: String,
    },
    /// The user's message is empty.
    #[error("empty message: type something to send")]
    EmptyMessage,
    /// Even the latest message alone does not fit in the context.
    #[error("the message needs {tokens} tokens plus {reserve} for the reply, but the context holds {limit}")]
    TooLong {
        /// Tokens of the rendered conversation (latest message only).
        tokens: usize,
        /// Tokens kept free for the reply.
        reserve: usize,
        /// The context (KV cache) size.
        limit: usize,
    },
    /// Tokenizing the conversation failed.
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    /// Generating the reply failed.
    #[error(transparent)]
    Generate(#[from] GenerateError),
}

/// One message of a conversation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

impl Message {
    /// A message from `role`.
    pub fn new(role: &str, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// A Jinja chat template with the special tokens it may refer to.
#[derive(Clone, Debug)]
pub struct ChatTemplate {
    source: String,
    origin: String,
    bos_token: String,
    eos_token: String,
    eot_token: String,
    system_role: bool,
}

impl ChatTemplate {
    /// The template of a GGUF file (`tokenizer.chat_template`), or [`BITNET_TEMPLATE`] when it has none.
    pub fn from_gguf(file: &GgufFile, tokenizer: &Tokenizer) -> Result<Self, ChatError> {
        match file.opt_str("tokenizer.chat_template") {
            Ok(Some(source)) => Self::new(
                source,
                format!("{}: tokenizer.chat_template", file.name()),
                tokenizer,
            ),
            Ok(None) => Self::bitnet(tokenizer),
            Err(e) => Err(ChatError::Template {
                origin: format!("{}: tokenizer.chat_template", file.name()),
                message: e.kind.to_string(),
            }),
        }
    }

    /// The template a model describes: a GGUF file's, or a transformers checkpoint directory's
    /// `tokenizer_config.json` `chat_template`; [`BITNET_TEMPLATE`] when it has none.
    pub fn for_model(path: &std::path::Path, tokenizer: &Tokenizer) -> Result<Self, ChatError> {
        if !path.is_dir() {
            let file = GgufFile::open(path).map_err(|e| ChatError::Template {
                origin: path.display().to_string(),
                message: e.to_string(),
            })?;
            return Self::from_gguf(&file, tokenizer);
        }
        let config = path.join("tokenizer_config.json");
        let source = std::fs::read(&config)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|j| j["chat_template"].as_str().map(String::from));
        match source {
            Some(s) => Self::new(s, config.display().to_string(), tokenizer),
            None => Self::bitnet(tokenizer),
        }
    }

    /// The BitNet 2B-4T format ([`BITNET_TEMPLATE`]).
    pub fn bitnet(tokenizer: &Tokenizer) -> Result<Self, ChatError> {
        Self::new(BITNET_TEMPLATE, "built-in BitNet format".into(), tokenizer)
    }

    /// A template from Jinja `source`, checked to parse, with the special tokens of `tokenizer`; `origin` names it
    /// in errors.
    pub fn new(
        source: impl Into<String>,
        origin: String,
        tokenizer: &Tokenizer,
    ) -> Result<Self, ChatError> {
        let text = |id: Option<u32>| id.and_then(|id| tokenizer.token(id)).unwrap_or_default();
        let stops = tokenizer.stop_ids();
        let mut template = Self::with_tokens(
            &source.into(),
            &origin,
            &text(tokenizer.bos_id()),
            &text(stops.first().copied()),
        )?;
        template.eot_token = text(stops.last().copied());
        Ok(template)
    }

    /// A template from Jinja `source` with explicit BOS and EOS texts (the end-of-turn text is EOS).
    pub fn with_tokens(
        source: &str,
        origin: &str,
        bos: &str,
        eos: &str,
    ) -> Result<Self, ChatError> {
        let mut template = Self {
            source: source.into(),
            origin: origin.into(),
            bos_token: bos.into(),
            eos_token: eos.into(),
            eot_token: eos.into(),
            system_role: true,
        };
        environment()
            .template_from_str(&template.source)
            .map_err(|e| template.error(e))?;
        let probe = "\u{1}system probe\u{1}";
        template.system_role = template
            .render(
                &[Message::new("system", probe), Message::new("user", "x")],
                false,
            )
            .is_ok_and(|text| text.contains(probe));
        Ok(template)
    }

    /// Where the template came from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The template's Jinja source.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The text its `bos_token` and `eos_token` stand for.
    pub fn special_tokens(&self) -> [&str; 2] {
        [&self.bos_token, &self.eos_token]
    }

    /// Whether the template renders system messages; when it does not (it drops or refuses them), a leading
    /// system message is prepended to the first user message instead, as llama.cpp does.
    pub fn supports_system_role(&self) -> bool {
        self.system_role
    }

    /// The conversation as the model's prompt text; with `add_generation_prompt`, ending where the assistant's
    /// reply starts.
    pub fn render(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<String, ChatError> {
        let merged;
        let messages = match messages {
            [system, user, rest @ ..]
                if !self.system_role && system.role == "system" && user.role == "user" =>
            {
                merged = [Message::new(
                    "user",
                    format!("{}\n{}", system.content, user.content),
                )]
                .into_iter()
                .chain(rest.iter().cloned())
                .collect::<Vec<_>>();
                &merged[..]
            }
            _ => messages,
        };
        environment()
            .render_str(
                &self.source,
                context! {
                    messages => Value::from(Serde(messages)),
                    add_generation_prompt,
                    bos_token => &self.bos_token,
                    eos_token => &self.eos_token,
                    eot_token => &self.eot_token,
                },
            )
            .map_err(|e| self.error(e))
    }

    /// `messages` rendered up to the assistant's reply, as ids, with BOS added unless the template wrote it.
    pub fn encode(
        &self,
        messages: &[Message],
        tokenizer: &Tokenizer,
    ) -> Result<Vec<u32>, ChatError> {
        let text = self.render(messages, true)?;
        let mut ids = tokenizer.encode(&text, true)?;
        if ids.len() >= 2 && ids[0] == ids[1] && Some(ids[0]) == tokenizer.bos_id() {
            ids.remove(0);
        }
        Ok(ids)
    }

    fn error(&self, e: JinjaError) -> ChatError {
        ChatError::Template {
            origin: self.origin.clone(),
            message: format!("{e:#}"),
        }
    }
}

/// Jinja as transformers configures it: trimmed blocks, Python string methods, `raise_exception`.
fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_syntax(
        SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .expect("the default delimiters are valid"),
    );
    minijinja_contrib::add_to_environment(&mut env);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function("raise_exception", |message: String| -> Result<(), _> {
        Err(JinjaError::new(JinjaErrorKind::InvalidOperation, message))
    });
    env
}

/// A conversation whose rendered prefix stays in the KV cache between turns.
#[derive(Clone, Debug)]
pub struct Chat {
    template: ChatTemplate,
    messages: Vec<Message>,
    cached: Vec<u32>,
}

impl Chat {
    /// A new conversation, optionally opened by a system message.
    pub fn new(template: ChatTemplate, system: Option<String>) -> Self {
        Self {
            template,
            messages: system
                .into_iter()
                .map(|s| Message::new("system", s))
                .collect(),
            cached: Vec::new(),
        }
    }

    /// The messages so far.
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// Forgets every turn (the system message stays) and empties `cache`.
    pub fn reset<B: TernaryBackend>(&mut self, cache: &mut KvCache<B>) {
        self.messages.retain(|m| m.role == "system");
        self.cached.clear();
        cache.reset();
    }

    /// Sends a user message and generates the reply (streamed to `on_text`). Only the tokens after the longest
    /// prefix already in `cache` are run; when the conversation outgrows the context, the oldest turns are dropped.
    pub fn send<B: TernaryBackend>(
        &mut self,
        model: &BitNet<B>,
        tokenizer: &Tokenizer,
        cache: &mut KvCache<B>,
        text: &str,
        opts: &GenerateOptions,
        on_text: impl FnMut(&str),
    ) -> Result<Generation, ChatError> {
        if text.trim().is_empty() {
            return Err(ChatError::EmptyMessage);
        }
        self.messages.push(Message::new("user", text));
        let ids = match self.fit(tokenizer, cache, model.config.context_length, opts) {
            Ok(ids) => ids,
            Err(e) => {
                self.messages.pop();
                return Err(e);
            }
        };
        if cache.len() != self.cached.len() {
            self.cached.clear();
            cache.reset();
        }
        let reuse = shared_prefix(&self.cached, &ids).min(ids.len() - 1);
        cache.truncate(reuse);
        let g = match generate_ids(
            model,
            tokenizer,
            cache,
            ids[reuse..].to_vec(),
            opts,
            on_text,
        ) {
            Ok(g) => g,
            Err(e) => {
                self.messages.pop();
                self.cached.truncate(reuse);
                return Err(e.into());
            }
        };
        // Every sampled token but the last went through the model.
        self.cached = ids;
        self.cached
            .extend_from_slice(&g.ids[..g.ids.len().saturating_sub(1)]);
        self.messages
            .push(Message::new("assistant", g.text.clone()));
        Ok(g)
    }

    /// Token ids of the conversation ending in the generation prompt, dropping the oldest turns until they fit in
    /// the context with room for the reply.
    fn fit<B: TernaryBackend>(
        &mut self,
        tokenizer: &Tokenizer,
        cache: &KvCache<B>,
        context: usize,
        opts: &GenerateOptions,
    ) -> Result<Vec<u32>, ChatError> {
        let limit = cache.max_len().min(context);
        let reserve = opts.max_new_tokens.min(limit / 2);
        loop {
            let ids = self.encode(tokenizer)?;
            if ids.len() + reserve <= limit {
                return Ok(ids);
            }
            let first = self.messages.iter().position(|m| m.role != "system");
            match first {
                Some(i) if i + 1 < self.messages.len() => {
                    let end = self.messages[i + 1..]
                        .iter()
                        .position(|m| m.role == "user")
                        .map_or(self.messages.len() - 1, |p| i + 1 + p);
                    self.messages.drain(i..end);
                }
                _ => {
                    return Err(ChatError::TooLong {
                        tokens: ids.len(),
                        reserve,
                        limit,
                    })
                }
            }
        }
    }

    fn encode(&self, tokenizer: &Tokenizer) -> Result<Vec<u32>, ChatError> {
        self.template.encode(&self.messages, tokenizer)
    }
}
