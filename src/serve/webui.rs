//! The chat page at `/` (as llama-server's web UI): a conversation with the served model in any browser, through
//! the same `/v1/chat/completions` every client uses. Two files built into the binary; `--no-webui` leaves them out.

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

/// The page and its script load only from this server; the script talks only to it.
const POLICY: &str = "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
                      frame-ancestors 'none'";

/// `GET /` and `GET /chat.js`, served to anyone (the API they call still checks the key).
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/",
            get(|| file("text/html; charset=utf-8", include_str!("webui/index.html"))),
        )
        .route(
            "/chat.js",
            get(|| {
                file(
                    "text/javascript; charset=utf-8",
                    include_str!("webui/chat.js"),
                )
            }),
        )
}

async fn file(kind: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            // a new binary's page is fetched again, never a stale one mixed with a new script
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}
