//! The routes and the middleware around them. `app(state)` is the whole
//! server as a `Router`, so tests drive it without a socket.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::json;

use crate::activate::{MAX_ACTIVATION_BYTES, activate};
use crate::error::ApiError;
use crate::page;
use crate::predict::predict;
use crate::state::AppState;
use crate::v2;

/// The OpenAPI description of the routes, served at `/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Every route: (method, path template, needs a token).
pub const ROUTES: [(Method, &str, bool); 18] = [
    (Method::GET, "/healthz", false),
    (Method::GET, "/readyz", false),
    (Method::GET, "/", false),
    (Method::GET, "/assets/tryout.js", false),
    (Method::GET, "/assets/tryout.css", false),
    (Method::POST, "/v1/activate", false),
    (Method::GET, "/v1/models", true),
    (Method::POST, "/v1/models/{id}/predict", true),
    (Method::GET, "/metrics", true),
    (Method::GET, "/openapi.json", true),
    (Method::GET, "/v2/health/live", false),
    (Method::GET, "/v2/health/ready", false),
    (Method::GET, "/v2", true),
    (Method::GET, "/v2/models/{id}", true),
    (Method::GET, "/v2/models/{id}/ready", true),
    (Method::POST, "/v2/models/{id}/infer", true),
    (Method::GET, "/v2/models/{id}/versions/{version}", true),
    (
        Method::POST,
        "/v2/models/{id}/versions/{version}/infer",
        true,
    ),
];

/// The server.
pub fn app(state: Arc<AppState>) -> Router {
    let predict = post(predict).route_layer(middleware::from_fn_with_state(state.clone(), admit));
    let infer = post(v2::infer).route_layer(middleware::from_fn_with_state(state.clone(), admit));
    // Each guarded path has its own 405 fallback, which the token check
    // wraps like the handlers: a wrong method (OPTIONS, PUT) on a guarded
    // path is asked for a token before it learns that the path exists.
    let api = Router::new()
        .route("/v1/models", get(list_models).fallback(wrong_method))
        .route("/v1/models/{id}/predict", predict.fallback(wrong_method))
        .route("/metrics", get(metrics).fallback(wrong_method))
        .route("/openapi.json", get(openapi).fallback(wrong_method))
        // The Open Inference Protocol (KServe v2): src/v2.
        .route("/v2", get(v2::server_metadata).fallback(wrong_method))
        .route(
            "/v2/models/{id}",
            get(v2::model_metadata).fallback(wrong_method),
        )
        .route(
            "/v2/models/{id}/ready",
            get(v2::model_ready).fallback(wrong_method),
        )
        .route(
            "/v2/models/{id}/infer",
            infer.clone().fallback(wrong_method),
        )
        .route(
            "/v2/models/{id}/versions/{version}",
            get(v2::model_metadata).fallback(wrong_method),
        )
        .route(
            "/v2/models/{id}/versions/{version}/infer",
            infer.fallback(wrong_method),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    let mut public = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/v2/health/live", get(v2::live))
        .route("/v2/health/ready", get(v2::ready))
        .merge(page::routes());
    if state.issuer.is_some() {
        // Its own cap, taken inside the handler once the body has arrived.
        public = public.route("/v1/activate", post(activate));
    }
    let body_limit = state.limits.max_body_bytes.max(MAX_ACTIVATION_BYTES);
    public
        .merge(api)
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// The token check: the same 401 for a missing, malformed, wrong or
/// revoked token. The token itself is never logged.
async fn require_token(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    // An absent token is checked like a wrong one, so both take as long.
    let token = bearer(request.headers()).unwrap_or("");
    if !state.tokens.verify(token) {
        return ApiError::Unauthorized.into_response();
    }
    next.run(request).await
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The concurrency cap, its queue and the request timeout.
async fn admit(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let _slot = match state.admission.enter().await {
        Ok(slot) => slot,
        Err(refusal) => return refusal.into_response(),
    };
    let limit = state.limits.request_timeout;
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout {
            limit_ms: limit.as_millis() as u64,
        }
        .into_response(),
    }
}

/// Counts and logs every answer: method, path, status and time, never a
/// header or body.
async fn observe(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |m| m.as_str())
        .to_string();
    let mut entry = AccessEntry {
        state,
        route,
        method: request.method().clone(),
        path: request.uri().path().to_string(),
        started: Instant::now(),
        status: CLIENT_GONE,
    };
    let mut response = next.run(request).await;
    entry.status = response.status().as_u16();
    // No browser may read an answer as anything but its declared type.
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// The status logged for a request whose client hung up before the answer
/// (nginx's convention): it still shows in the log and the counters.
const CLIENT_GONE: u16 = 499;

/// One line of the access log, written when the request ends: answered, or
/// dropped because its client is gone.
struct AccessEntry {
    state: Arc<AppState>,
    route: String,
    method: Method,
    path: String,
    started: Instant,
    status: u16,
}

impl Drop for AccessEntry {
    fn drop(&mut self) {
        let took = self.started.elapsed();
        let (method, path, status) = (&self.method, &self.path, self.status);
        self.state.metrics.record(&self.route, status, took);
        let gone = if status == CLIENT_GONE {
            " (the client hung up)"
        } else {
            ""
        };
        let ms = took.as_secs_f64() * 1e3;
        tracing::info!(target: "access", "{method} {path} {status} {ms:.1}ms{gone}");
    }
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if state.ready.load(Ordering::Acquire) {
        Json(json!({"status": "ready", "models": state.models.len()})).into_response()
    } else {
        let body = json!({"code": "not_ready", "message": "the server is starting or stopping"});
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}

/// One entry of `GET /v1/models`.
#[derive(Debug, Serialize)]
struct ModelInfo<'a> {
    id: &'a str,
    arch: &'a str,
    role: semiclass_manifest::checkpoint::Role,
    target: semiclass_manifest::package::Target,
    input_size: u32,
    class_names: &'a [String],
    created: &'a str,
    model_sha256: &'a str,
}

async fn list_models(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let models: Vec<ModelInfo> = state
        .models
        .iter()
        .map(|(id, model)| {
            let m = &model.manifest;
            ModelInfo {
                id,
                arch: &m.model.arch,
                role: m.model.role,
                target: m.target,
                input_size: m.model.input_size,
                class_names: &m.model.class_names,
                created: &m.created,
                model_sha256: m.files.get(&m.model.onnx).map_or("", String::as_str),
            }
        })
        .collect();
    Json(json!({ "models": models }))
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let models: Vec<_> = state
        .models
        .iter()
        .map(|(id, model)| (id.as_str(), model.stats.as_ref()))
        .collect();
    let text = state.metrics.render(&models);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn no_route(request: Request) -> ApiError {
    ApiError::NoRoute {
        path: request.uri().path().to_string(),
    }
}

async fn wrong_method(request: Request) -> Response {
    let body = json!({
        "code": "method_not_allowed",
        "message": format!("{} is not allowed on {}: see /openapi.json", request.method(), request.uri().path()),
    });
    (StatusCode::METHOD_NOT_ALLOWED, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_read_from_the_authorization_header_only() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer(&headers), None);
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer  sct_x "),
        );
        assert_eq!(bearer(&headers), Some("sct_x"));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic sct_x"),
        );
        assert_eq!(bearer(&headers), None);
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer"));
        assert_eq!(bearer(&headers), None);
    }
}
