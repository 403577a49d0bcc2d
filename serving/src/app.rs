//! The routes and the middleware around them. `app(state)` is the whole
//! server as a `Router`, so tests drive it without a socket.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use axum::{Extension, Json, Router};
use semiclass_manifest::checkpoint::Role;
use semiclass_manifest::package::Target;
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use crate::activate::MAX_ACTIVATION_BYTES;
use crate::error::{ApiError, ErrorBody};
use crate::openapi::{self, Document, ErrorResponse};
use crate::state::AppState;
use crate::v2;
use crate::{activate, page, predict};

/// The server.
pub fn app(state: Arc<AppState>) -> Router {
    let (router, document) = routes(&state).split_for_parts();
    let body_limit = state.limits.max_body_bytes.max(MAX_ACTIVATION_BYTES);
    router
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(Extension(Document::new(&document)))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Every route, each mounted and described by the same call, so that the
/// OpenAPI document (`split_for_parts`) lists exactly what is served.
pub fn routes(state: &Arc<AppState>) -> OpenApiRouter<Arc<AppState>> {
    let admitted = |router: MethodRouter<Arc<AppState>>| {
        router
            .route_layer(middleware::from_fn_with_state(state.clone(), admit))
            .fallback(wrong_method)
    };
    // Each guarded path has its own 405 fallback, which the token check
    // wraps like the handlers: a wrong method (OPTIONS, PUT) on a guarded
    // path is asked for a token before it learns that the path exists.
    let mut guarded = OpenApiRouter::default()
        .routes(routes!(list_models).map(refuse_other_methods))
        .routes(routes!(predict::predict).map(admitted))
        .routes(routes!(metrics).map(refuse_other_methods))
        .routes(routes!(openapi::document).map(refuse_other_methods))
        // The Open Inference Protocol (KServe v2): src/v2.
        .routes(routes!(v2::server_metadata).map(refuse_other_methods))
        .routes(routes!(v2::model_metadata).map(refuse_other_methods))
        .routes(routes!(v2::model_ready).map(refuse_other_methods))
        .routes(routes!(v2::infer).map(admitted))
        .routes(v2::versioned(routes!(v2::model_metadata)).map(refuse_other_methods))
        .routes(v2::versioned(routes!(v2::infer)).map(admitted))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    openapi::require_bearer(guarded.get_openapi_mut());
    let mut public = OpenApiRouter::with_openapi(<openapi::Base as utoipa::OpenApi>::openapi())
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(v2::live))
        .routes(routes!(v2::ready))
        .merge(page::routes());
    if state.issuer.is_some() {
        // Its own cap, taken inside the handler once the body has arrived.
        public = public.routes(routes!(activate::activate));
    }
    public.merge(guarded)
}

fn refuse_other_methods(router: MethodRouter<Arc<AppState>>) -> MethodRouter<Arc<AppState>> {
    router.fallback(wrong_method)
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

/// `/healthz`'s answer.
#[derive(Debug, Serialize, ToSchema)]
struct Alive {
    /// `ok`.
    status: &'static str,
}

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    summary = "Liveness probe",
    responses((status = 200, description = "alive", body = Alive))
)]
async fn healthz() -> Json<Alive> {
    Json(Alive { status: "ok" })
}

/// `/readyz`'s answer.
#[derive(Debug, Serialize, ToSchema)]
struct Ready {
    /// `ready`.
    status: &'static str,
    /// Models loaded and warm.
    models: usize,
}

#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    summary = "Readiness probe",
    responses(
        (status = 200, description = "models loaded and warm", body = Ready),
        (status = 503, response = ErrorResponse),
    )
)]
async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if state.ready.load(Ordering::Acquire) {
        let ready = Ready {
            status: "ready",
            models: state.models.len(),
        };
        Json(ready).into_response()
    } else {
        let body = ErrorBody {
            code: "not_ready".into(),
            message: "the server is starting or stopping".into(),
        };
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}

/// One entry of `GET /v1/models`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Model)]
struct ModelInfo<'a> {
    id: &'a str,
    arch: &'a str,
    #[schema(schema_with = role_schema)]
    role: Role,
    #[schema(schema_with = target_schema)]
    target: Target,
    input_size: u32,
    class_names: &'a [String],
    created: &'a str,
    model_sha256: &'a str,
}

/// `GET /v1/models`'s answer.
#[derive(Debug, Serialize, ToSchema)]
struct ModelList<'a> {
    models: Vec<ModelInfo<'a>>,
}

/// The role as the manifest writes it: one string of a closed set.
fn role_schema() -> Schema {
    // A new role fails to compile here until it is listed.
    let names = [Role::Large, Role::Small].map(|role| match role {
        Role::Large | Role::Small => serde_json::to_value(role).unwrap_or_default(),
    });
    string_enum(names)
}

fn target_schema() -> Schema {
    string_enum(Target::ALL.map(|t| t.as_str()))
}

fn string_enum<T: Into<serde_json::Value>>(values: impl IntoIterator<Item = T>) -> Schema {
    Schema::Object(
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(values))
            .build(),
    )
}

#[utoipa::path(
    get,
    path = "/v1/models",
    tag = "v1",
    summary = "The served models",
    responses((status = 200, description = "models", body = ModelList))
)]
async fn list_models(State(state): State<Arc<AppState>>) -> Response {
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
    Json(ModelList { models }).into_response()
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "meta",
    summary = "Prometheus metrics",
    responses((status = 200, description = "the Prometheus text format 0.0.4", content_type = "text/plain"))
)]
async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let text = state.metrics.render();
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response()
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
