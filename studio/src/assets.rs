//! Files the pages load, compiled into the binary: nothing comes from the
//! network at run time.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

pub const STYLE_PATH: &str = "/assets/studio.css";
pub const HTMX_PATH: &str = "/assets/htmx-2.0.11.min.js";
pub const HTMX_SSE_PATH: &str = "/assets/htmx-ext-sse-2.2.4.min.js";
pub const UPLOT_PATH: &str = "/assets/uPlot-1.6.32.iife.min.js";
pub const UPLOT_CSS_PATH: &str = "/assets/uPlot-1.6.32.min.css";
pub const CURVES_PATH: &str = "/assets/run-curves.js";

/// htmx 2.0.11 from npm (`htmx.org`), Zero-Clause BSD (assets/htmx-LICENSE.txt).
const HTMX: &str = include_str!("../assets/htmx-2.0.11.min.js");
/// htmx's server-sent events extension 2.2.4 from npm (`htmx-ext-sse`),
/// Zero-Clause BSD (assets/htmx-ext-sse-LICENSE.txt).
const HTMX_SSE: &str = include_str!("../assets/htmx-ext-sse-2.2.4.min.js");
const STYLE: &str = include_str!("../assets/studio.css");
/// uPlot 1.6.32 from npm (`uplot`), MIT (assets/uPlot-LICENSE.txt): the
/// run page's curves.
const UPLOT: &str = include_str!("../assets/uPlot-1.6.32.iife.min.js");
const UPLOT_CSS: &str = include_str!("../assets/uPlot-1.6.32.min.css");
/// The run page's curves, drawn with uPlot from the run's metrics.csv rows.
const CURVES: &str = include_str!("../assets/run-curves.js");

/// `GET /assets/{name}`: versioned names, so browsers may keep them a day.
pub async fn asset(Path(name): Path<String>) -> Response {
    let (body, kind) = match format!("/assets/{name}").as_str() {
        STYLE_PATH => (STYLE, "text/css; charset=utf-8"),
        HTMX_PATH => (HTMX, "text/javascript; charset=utf-8"),
        HTMX_SSE_PATH => (HTMX_SSE, "text/javascript; charset=utf-8"),
        UPLOT_PATH => (UPLOT, "text/javascript; charset=utf-8"),
        UPLOT_CSS_PATH => (UPLOT_CSS, "text/css; charset=utf-8"),
        CURVES_PATH => (CURVES, "text/javascript; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "no such asset").into_response(),
    };
    let headers = [
        (header::CONTENT_TYPE, kind),
        (header::CACHE_CONTROL, "max-age=86400"),
    ];
    (headers, body).into_response()
}
