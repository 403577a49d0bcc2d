//! The try-out page: upload one image, see the top-k of the large and the
//! small model side by side with their latency. Its three files are
//! compiled into the binary (no CDN, nothing fetched at run time). The page
//! holds no data: it asks for an access token and calls the API with it.

use std::sync::Arc;

use axum::http::header;
use axum::response::IntoResponse;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

const INDEX_HTML: &str = include_str!("page/index.html");
const TRYOUT_JS: &str = include_str!("page/tryout.js");
const TRYOUT_CSS: &str = include_str!("page/tryout.css");

/// Only this server's own files may run or load on the page.
const CSP: &str = "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'";

/// `/`, `/assets/tryout.js`, `/assets/tryout.css`.
pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::default()
        .routes(routes!(index))
        .routes(routes!(script))
        .routes(routes!(style))
}

#[utoipa::path(
    get,
    path = "/",
    tag = "page",
    summary = "The try-out page (HTML)",
    responses((status = 200, description = "the page", content_type = "text/html"))
)]
async fn index() -> impl IntoResponse {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

#[utoipa::path(
    get,
    path = "/assets/tryout.js",
    tag = "page",
    summary = "Script of the try-out page",
    responses((status = 200, description = "script", content_type = "text/javascript"))
)]
async fn script() -> impl IntoResponse {
    asset("text/javascript; charset=utf-8", TRYOUT_JS)
}

#[utoipa::path(
    get,
    path = "/assets/tryout.css",
    tag = "page",
    summary = "Style of the try-out page",
    responses((status = 200, description = "style", content_type = "text/css"))
)]
async fn style() -> impl IntoResponse {
    asset("text/css; charset=utf-8", TRYOUT_CSS)
}

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}
