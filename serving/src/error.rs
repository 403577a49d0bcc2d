//! What an API caller gets back when a request fails: a status and a JSON
//! body `{"code": "...", "message": "..."}`. `code` is stable and meant for
//! programs; `message` says what to do.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use semiclass_license_issuer::IssuerError;
use semiclass_preprocess::DecodeError;
use serde::{Deserialize, Serialize};

/// The JSON body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    /// Stable, for programs: `unauthorized`, `unknown_model`, `busy`, ...
    pub code: String,
    pub message: String,
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The same answer for a missing, malformed, wrong or revoked token, so
    /// that a caller learns nothing about which tokens exist.
    #[error("a valid access token is required: send `Authorization: Bearer <token>`")]
    Unauthorized,
    #[error("no route {path}: see /openapi.json")]
    NoRoute { path: String },
    #[error("no model {id:?}: GET /v1/models lists the served ones")]
    UnknownModel { id: String },
    #[error("{0}")]
    BadRequest(String),
    #[error("request body is larger than the limit of {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("the request body did not arrive within {limit_ms} ms")]
    BodyTimeout { limit_ms: u64 },
    #[error("content type {found:?} is not accepted: {accepted}")]
    UnsupportedMediaType { found: String, accepted: String },
    #[error("image {index}: {source}")]
    TooManyPixels { index: usize, source: DecodeError },
    #[error(
        "the request's images declare {megapixels:.1} MP together, more than the limit of {limit_mp:.1} MP a request: send fewer or smaller images per request"
    )]
    RequestTooManyPixels { megapixels: f64, limit_mp: f64 },
    #[error("image {index}: cannot be read as an image: {source}")]
    BadImage { index: usize, source: DecodeError },
    #[error("the server is busy: retry later")]
    Busy,
    #[error("the server is overloaded: retry later")]
    Overloaded,
    #[error("the request took longer than the limit of {limit_ms} ms")]
    Timeout { limit_ms: u64 },
    #[error("{0}")]
    Activation(IssuerError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// The HTTP status and the stable code of this error.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        use StatusCode as S;
        match self {
            ApiError::Unauthorized => (S::UNAUTHORIZED, "unauthorized"),
            ApiError::NoRoute { .. } => (S::NOT_FOUND, "not_found"),
            ApiError::UnknownModel { .. } => (S::NOT_FOUND, "unknown_model"),
            ApiError::BadRequest(_) => (S::BAD_REQUEST, "bad_request"),
            ApiError::BodyTooLarge { .. } => (S::PAYLOAD_TOO_LARGE, "body_too_large"),
            ApiError::BodyTimeout { .. } => (S::REQUEST_TIMEOUT, "body_timeout"),
            ApiError::UnsupportedMediaType { .. } => {
                (S::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::TooManyPixels { .. } | ApiError::RequestTooManyPixels { .. } => {
                (S::PAYLOAD_TOO_LARGE, "too_many_pixels")
            }
            ApiError::BadImage { .. } => (S::UNPROCESSABLE_ENTITY, "bad_image"),
            ApiError::Busy => (S::TOO_MANY_REQUESTS, "busy"),
            ApiError::Overloaded => (S::SERVICE_UNAVAILABLE, "overloaded"),
            ApiError::Timeout { .. } => (S::SERVICE_UNAVAILABLE, "timeout"),
            ApiError::Activation(err) => activation_status(err),
            ApiError::Internal(_) => (S::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    /// Sorts a decoding failure of image `index` into "too big" or "not an
    /// image".
    pub fn image(index: usize, source: DecodeError) -> ApiError {
        match source {
            DecodeError::TooManyPixels { .. } => ApiError::TooManyPixels { index, source },
            source => ApiError::BadImage { index, source },
        }
    }
}

fn activation_status(err: &IssuerError) -> (StatusCode, &'static str) {
    let Some(code) = err.code() else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "internal");
    };
    let status = match code {
        "bad_request" => StatusCode::BAD_REQUEST,
        "unknown_package" | "unknown_serial" => StatusCode::NOT_FOUND,
        _ => StatusCode::FORBIDDEN,
    };
    (status, code)
}

impl ApiError {
    /// What the caller is told. Internal failures (the issuer's database
    /// or key file, a stopped worker) are the operator's business: logged
    /// here, and the caller learns only that it failed.
    pub fn public_message(&self) -> String {
        if self.status_and_code().0 == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!("{self}");
            "internal server error; the server log has the details".to_string()
        } else {
            self.to_string()
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let message = self.public_message();
        let body = ErrorBody {
            code: code.to_string(),
            message,
        };
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        match self {
            ApiError::Unauthorized => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            // A polite client backs off instead of retrying at once.
            ApiError::Busy | ApiError::Overloaded | ApiError::Timeout { .. } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixel_bombs_and_garbage_get_different_codes() {
        let bomb = DecodeError::TooManyPixels {
            width: 10,
            height: 10,
            megapixels: 1.0,
            limit_mp: 0.5,
        };
        let (status, code) = ApiError::image(0, bomb).status_and_code();
        assert_eq!((status.as_u16(), code), (413, "too_many_pixels"));
        let garbage = ApiError::image(2, DecodeError::UnknownFormat);
        assert_eq!(garbage.status_and_code().0.as_u16(), 422);
        assert!(garbage.to_string().starts_with("image 2: "), "{garbage}");
    }
}
