//! `bitnet serve`'s HTTP layer: OpenAI-compatible endpoints over the batched [`Engine`], plus `/health`,
//! `/tokenize`, `/detokenize` and Prometheus `/metrics`, spelled as llama-server spells them, and a chat page at `/`.

mod completions;
mod error;
mod native;
mod params;
mod responses;
mod stored;
mod webui;

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bitnet_burn::engine::{Engine, Finished};
use bitnet_burn::text::chat::ChatTemplate;
use bitnet_burn::text::tokenizer::Tokenizer;
use serde::Deserialize;
use serde_json::json;
use tower_http::cors::{AllowHeaders, Any, CorsLayer};

pub use error::ApiError;

/// Largest request body accepted (a full 4096-token prompt is ~16 KB of text; chats carry their history).
pub const BODY_LIMIT: usize = 1 << 20;

/// What the endpoints need once the model is loaded.
pub struct Ready {
    /// The batched engine.
    pub engine: Engine,
    /// The model's tokenizer.
    pub tokenizer: Arc<Tokenizer>,
    /// The model's chat template.
    pub template: ChatTemplate,
    /// Names `model` may take in a request; the first is reported.
    pub names: Vec<String>,
}

/// The server's state: ready once the model is loaded (until then every endpoint but `/health` answers 503).
pub struct AppState {
    ready: OnceLock<Ready>,
    api_key: Option<String>,
    metrics: bool,
    next_id: AtomicU64,
    /// Random per process, in response ids: a server restarted never answers a follow-up to another's response.
    nonce: u64,
    /// Responses kept for follow-ups.
    stored: Mutex<stored::Stored>,
}

impl AppState {
    /// A server still loading its model.
    pub fn new(api_key: Option<String>, metrics: bool) -> Self {
        Self {
            ready: OnceLock::new(),
            api_key,
            metrics,
            next_id: AtomicU64::new(1),
            nonce: RandomState::new().hash_one(std::time::SystemTime::now()),
            stored: Mutex::default(),
        }
    }

    /// Marks the model loaded.
    pub fn set_ready(&self, ready: Ready) {
        let _ = self.ready.set(ready);
    }

    /// The kept responses (a panic while they were held leaves them usable: each change is whole).
    fn stored(&self) -> MutexGuard<'_, stored::Stored> {
        self.stored.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn ready(&self) -> Result<&Ready, ApiError> {
        self.ready
            .get()
            .ok_or_else(|| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the model is loading"))
    }
}

/// Whether each request and each finished reply is logged to stderr (`--log-disable` turns it off).
static LOG_REQUESTS: AtomicBool = AtomicBool::new(true);

/// Logs requests and replies to stderr or not, for the whole process.
pub fn log_requests(on: bool) {
    LOG_REQUESTS.store(on, Ordering::Relaxed);
}

/// Writes `line` to stderr in one write, so a process reading the pipe never sees it cut: `eprintln!` writes
/// each formatted piece on its own, and a reader once took the address before its port had been written. A
/// failed write is let go: `eprint!` panics when stderr is a pipe nobody reads any more (the process that
/// started the server has gone), which failed every request and stalled a graceful stop.
pub fn log_line(mut line: String) {
    use std::io::Write;
    line.push('\n');
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// Logs a finished reply (llama-server logs a slot's timings when it is released): its tokens, speed and end.
fn log_reply(id: &str, f: &Finished) {
    if LOG_REQUESTS.load(Ordering::Relaxed) {
        let t = completions::Timings::of(f);
        log_line(format!(
            "{id}: {} prompt tokens ({} cached) in {:.0} ms, {} generated at {:.1} tok/s, {}",
            f.prompt_tokens,
            f.cached_tokens,
            t.prompt_ms,
            f.ids.len(),
            t.predicted_per_second(),
            f.stop.finish_reason()
        ));
    }
}

/// Logs each request: method, path, status and the time to its response's head (a stream's start).
async fn log_request(request: Request, next: Next) -> Response {
    let (method, path, started) = (
        request.method().clone(),
        request.uri().path().to_owned(),
        Instant::now(),
    );
    let response = next.run(request).await;
    if LOG_REQUESTS.load(Ordering::Relaxed) {
        let ms = started.elapsed().as_secs_f64() * 1e3;
        log_line(format!(
            "{method} {path} {} {ms:.1} ms",
            response.status().as_u16()
        ));
    }
    response
}

/// The routes (with the chat page if `webui`), with the API key check, the body limit and cross-origin access.
pub fn router(state: Arc<AppState>, webui: bool) -> Router {
    let protected = Router::new()
        .route("/v1/chat/completions", post(completions::chat))
        .route("/chat/completions", post(completions::chat))
        .route("/v1/completions", post(completions::completion))
        .route("/completion", post(native::completion))
        .route("/completions", post(completions::completion))
        .route("/v1/responses", post(responses::responses))
        .route("/responses", post(responses::responses))
        .route(
            "/v1/responses/{id}",
            get(responses::retrieve).delete(responses::delete),
        )
        .route("/tokenize", post(tokenize))
        .route("/props", get(props))
        .route("/detokenize", post(detokenize))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(state.clone(), authorize));
    Router::new()
        .route("/health", get(health))
        .route("/v1/health", get(health))
        .route("/v1/models", get(models))
        .route("/models", get(models))
        .merge(protected)
        .merge(if webui {
            webui::routes()
        } else {
            Router::new()
        })
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint") })
        .method_not_allowed_fallback(|method: Method, uri: Uri| async move {
            let message = format!("{} does not take {method}", uri.path());
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, message)
        })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(cors())
        .layer(middleware::from_fn(log_request))
        .with_state(state)
}

/// Any web page may call the API, as llama-server allows, so browser chat UIs served from another origin work (the
/// key, when set, still guards it). Preflights are answered here, before the key check: browsers send no key on them.
fn cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST])
        // Echoed rather than `*`, which the Fetch standard does not let cover `Authorization` (Firefox and Safari
        // enforce it).
        .allow_headers(AllowHeaders::mirror_request())
        .expose_headers([header::RETRY_AFTER])
        .max_age(Duration::from_secs(24 * 60 * 60))
}

/// 401 unless the request carries the key (`Authorization: Bearer KEY`), when one is set.
async fn authorize(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    if let Some(key) = &state.api_key {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(key.as_str()) {
            let why = if given.is_some() {
                "invalid API key"
            } else {
                "missing API key: send Authorization: Bearer KEY"
            };
            return ApiError::new(StatusCode::UNAUTHORIZED, why)
                .code("invalid_api_key")
                .into_response();
        }
    }
    next.run(request).await
}

/// The body, or the right status for one that could not be read (413 over [`BODY_LIMIT`]).
fn body(raw: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    raw.map_err(|e| {
        let status = e.status();
        let message = match status {
            StatusCode::PAYLOAD_TOO_LARGE => {
                format!("the request body is larger than the limit of {BODY_LIMIT} bytes")
            }
            _ => e.body_text(),
        };
        ApiError::new(status, message)
    })
}

/// `GET /health`: 503 while loading, 200 when ready.
async fn health(State(state): State<Arc<AppState>>) -> Result<Json<serde_json::Value>, ApiError> {
    state.ready()?;
    Ok(Json(json!({"status": "ok"})))
}

/// `GET /v1/models`.
async fn models(State(state): State<Arc<AppState>>) -> Result<Json<serde_json::Value>, ApiError> {
    let ready = state.ready()?;
    let config = ready.engine.config();
    Ok(Json(json!({
        "object": "list",
        "data": [{
            "id": ready.names[0], "object": "model", "created": 0, "owned_by": "bitnet-burn",
            "meta": {"n_ctx_slot": config.ctx, "n_slots": config.slots, "n_vocab": ready.tokenizer.vocab_size()},
        }],
    })))
}

/// `GET /props`: llama-server's description of the server, read by clients written for it: the defaults a
/// request's unset parameters take and a slot's context, the slots, the model, its chat template and special tokens.
async fn props(State(state): State<Arc<AppState>>) -> Result<Json<serde_json::Value>, ApiError> {
    let ready = state.ready()?;
    let config = ready.engine.config();
    let unset = params::Common::default();
    let mut settings =
        native::settings(&unset, &unset.validate(&ready.names, ready.engine.vocab())?);
    // llama-server's seed for "a random one each request", as an unset seed is here
    settings["seed"] = json!(u32::MAX);
    let [bos, eos] = ready.template.special_tokens();
    Ok(Json(json!({
        "default_generation_settings": {"n_ctx": config.ctx, "params": settings},
        "total_slots": config.slots,
        "model_alias": ready.names[0],
        "model_path": ready.names.last(),
        "modalities": {"vision": false, "audio": false},
        "chat_template": ready.template.source(),
        "bos_token": bos,
        "eos_token": eos,
        "build_info": concat!("bitnet-burn ", env!("CARGO_PKG_VERSION")),
    })))
}

#[derive(Deserialize)]
struct TokenizeBody {
    content: String,
    #[serde(default)]
    add_special: bool,
    /// llama-server's: each token with its text (`piece`; its bytes when they are not UTF-8 alone).
    #[serde(default)]
    with_pieces: bool,
}

/// `POST /tokenize`: `{"content", "add_special", "with_pieces"}` → `{"tokens"}`.
async fn tokenize(
    State(state): State<Arc<AppState>>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let ready = state.ready()?;
    let body: TokenizeBody = params::read(&params::object(&body(raw)?)?)?;
    let tokens = ready
        .tokenizer
        .encode(&body.content, body.add_special)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    if !body.with_pieces {
        return Ok(Json(json!({"tokens": tokens})));
    }
    let piece = |id: u32| {
        let bytes = ready.tokenizer.token_bytes(id).unwrap_or_default();
        String::from_utf8(bytes).map_or_else(|e| json!(e.into_bytes()), |text| json!(text))
    };
    let pieces: Vec<_> = tokens
        .iter()
        .map(|&id| json!({"id": id, "piece": piece(id)}))
        .collect();
    Ok(Json(json!({"tokens": pieces})))
}

#[derive(Deserialize)]
struct DetokenizeBody {
    tokens: Vec<u32>,
}

/// `POST /detokenize`: `{"tokens"}` → `{"content"}`.
async fn detokenize(
    State(state): State<Arc<AppState>>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let ready = state.ready()?;
    let body: DetokenizeBody = params::read(&params::object(&body(raw)?)?)?;
    let vocab = ready.tokenizer.vocab_size();
    if let Some(id) = body.tokens.iter().find(|&&id| id as usize >= vocab) {
        return Err(ApiError::bad_request(format!(
            "tokens: id {id} is outside the vocabulary (size {vocab})"
        ))
        .param("tokens"));
    }
    let content = ready
        .tokenizer
        .decode(&body.tokens)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(Json(json!({"content": content})))
}

/// `GET /metrics` (with `--metrics`): the engine's counters in Prometheus' text format. Written directly: the
/// values are read from the engine's atomics at scrape time, which a metrics registry would only copy.
async fn metrics(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    if !state.metrics {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "metrics are off: start the server with --metrics",
        ));
    }
    let ready = state.ready()?;
    let s = ready.engine.stats().snapshot();
    let slots = ready.engine.config().slots;
    let rows: [(&str, &str, &str, f64); 10] = [
        (
            "bitnet_requests_total",
            "counter",
            "Requests completed.",
            s.requests as f64,
        ),
        (
            "bitnet_prompt_tokens_total",
            "counter",
            "Prompt tokens of completed requests.",
            s.prompt_tokens as f64,
        ),
        (
            "bitnet_prompt_tokens_cached_total",
            "counter",
            "Prompt tokens found in a slot's KV cache.",
            s.cached_tokens as f64,
        ),
        (
            "bitnet_tokens_generated_total",
            "counter",
            "Tokens generated.",
            s.generated_tokens as f64,
        ),
        (
            "bitnet_decode_tokens_per_second",
            "gauge",
            "Tokens generated per second over all sequences, last step.",
            s.decode_tok_s,
        ),
        (
            "bitnet_requests_queued",
            "gauge",
            "Requests waiting for a slot.",
            s.queued as f64,
        ),
        (
            "bitnet_prompt_cache_bytes",
            "gauge",
            "Bytes of prompts kept after their slot moved on (--cache-ram).",
            s.kept_bytes as f64,
        ),
        (
            "bitnet_prompt_cache_prompts",
            "gauge",
            "Prompts kept after their slot moved on.",
            s.kept_prompts as f64,
        ),
        (
            "bitnet_slots_busy",
            "gauge",
            "Slots in use.",
            s.busy_slots as f64,
        ),
        (
            "bitnet_slots",
            "gauge",
            "Slots (sequences decoded together).",
            slots as f64,
        ),
    ];
    let text: String = rows
        .iter()
        .map(|(name, kind, help, value)| {
            format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n")
        })
        .collect();
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}
