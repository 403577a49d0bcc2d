//! The try-out page: upload one image, see the top-k of the large and the
//! small model side by side with their latency. Its three files are
//! compiled into the binary (no CDN, nothing fetched at run time). The page
//! holds no data: it asks for an access token and calls the API with it.

use std::sync::Arc;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::state::AppState;

const INDEX_HTML: &str = include_str!("page/index.html");
const TRYOUT_JS: &str = include_str!("page/tryout.js");
const TRYOUT_CSS: &str = include_str!("page/tryout.css");

/// Only this server's own files may run or load on the page.
const CSP: &str = "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'";

/// `/`, `/assets/tryout.js`, `/assets/tryout.css`.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(|| asset("text/html; charset=utf-8", INDEX_HTML)))
        .route(
            "/assets/tryout.js",
            get(|| asset("text/javascript; charset=utf-8", TRYOUT_JS)),
        )
        .route(
            "/assets/tryout.css",
            get(|| asset("text/css; charset=utf-8", TRYOUT_CSS)),
        )
}

async fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}
