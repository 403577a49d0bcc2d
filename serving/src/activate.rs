//! `POST /v1/activate`: the SDK's online activation. The body is the
//! activation request (the same JSON as the offline request file); the
//! answer is the license file's text. The issuer library enforces the
//! serial's rules (unknown, revoked, another package, expired, activation
//! limit); this route adds a small body limit, a body that must arrive
//! within the body timeout *before* the request queues, and a cap of its
//! own. Its callers are buyers of the SDK holding a serial, not holders of
//! an API token, so anyone may call it: a client that sends headers and
//! then trickles (or never sends) the body holds a connection for at most
//! the body timeout and never a slot, of this cap or of the predictions'.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::header;
use semiclass_license_issuer::IssuerError;
use semiclass_licensing::{ActivationRequest, unix_now};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::limits::Cap;
use crate::openapi::ErrorResponse;
use crate::predict::read_body;
use crate::state::AppState;

/// Activation requests are a few hundred bytes.
pub const MAX_ACTIVATION_BYTES: usize = 64 << 10;

/// Activations at once and waiting: a grant is a SQLite transaction and a
/// signature (milliseconds), and buyers activate once per machine, so a
/// few slots serve any honest load.
pub const ACTIVATION_CAP: Cap = Cap {
    max_concurrent: 2,
    max_queue: 16,
    queue_timeout: Duration::from_secs(2),
};

/// A granted activation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ActivateResponse {
    /// The license file, to be installed as is.
    pub license: String,
}

/// The handler (mounted only when the server has an issuer).
#[utoipa::path(
    post,
    path = "/v1/activate",
    tag = "v1",
    summary = "Online activation of an SDK package",
    description = "The body is the activation request the SDK writes; the serial is the credential, no token is needed. Served only by a server started with an issuer.",
    request_body(content = Object, content_type = "application/json", description = "the activation request (the offline request file's JSON)"),
    responses(
        (status = 200, description = "the license file", body = ActivateResponse),
        (status = 400, response = ErrorResponse),
        (status = 403, response = ErrorResponse),
        (status = 404, response = ErrorResponse),
        (status = 408, response = ErrorResponse),
        (status = 413, response = ErrorResponse),
        (status = 415, response = ErrorResponse),
        (status = 429, response = ErrorResponse),
        (status = 503, response = ErrorResponse),
    )
)]
pub async fn activate(
    State(state): State<Arc<AppState>>,
    request: Request,
) -> Result<Json<ActivateResponse>, ApiError> {
    let issuer = state.issuer.clone().ok_or(ApiError::NoRoute {
        path: "/v1/activate".into(),
    })?;
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if !content_type
        .to_ascii_lowercase()
        .starts_with("application/json")
    {
        return Err(ApiError::UnsupportedMediaType {
            found: content_type,
            accepted: "application/json".into(),
        });
    }
    let limit = state.limits.body_timeout;
    let (_, body) = tokio::time::timeout(limit, read_body(request, MAX_ACTIVATION_BYTES))
        .await
        .map_err(|_| ApiError::BodyTimeout {
            limit_ms: limit.as_millis() as u64,
        })??;
    let _slot = state.activation.enter().await?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::BadRequest("the activation request is not UTF-8".into()))?;
    let request = ActivationRequest::from_json(text)
        .map_err(|e| ApiError::Activation(IssuerError::Request(e)))?;
    // SQLite and signing block: keep them off the async workers.
    let license = tokio::task::spawn_blocking(move || issuer.activate(&request, unix_now()))
        .await
        .map_err(|e| ApiError::Internal(format!("activation: {e}")))?
        .map_err(ApiError::Activation)?;
    Ok(Json(ActivateResponse { license }))
}
