//! What a request can fail with, and how the browser is told: the status
//! and a page (or, for htmx requests, the fragment) that says what to do.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::html;

/// Why a request was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum StudioError {
    /// The request is fine but its content is not (a form value, a path).
    #[error("{0}")]
    Invalid(String),
    /// Several problems at once, each its own line (the form's values).
    #[error("{}", .0.join("; "))]
    InvalidMany(Vec<String>),
    #[error("{0}")]
    NotFound(String),
    /// The thing exists but is not in a state that allows this.
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Registry(#[from] semiclass_registry::RegistryError),
    /// Something on this machine failed (a file, a thread).
    #[error("{0}")]
    Internal(String),
}

impl StudioError {
    fn status(&self) -> StatusCode {
        match self {
            StudioError::Invalid(_) | StudioError::InvalidMany(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            StudioError::NotFound(_) => StatusCode::NOT_FOUND,
            StudioError::Conflict(_) => StatusCode::CONFLICT,
            StudioError::Registry(_) | StudioError::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    fn lines(&self) -> Vec<String> {
        match self {
            StudioError::InvalidMany(lines) => lines.clone(),
            other => vec![other.to_string()],
        }
    }
}

/// A fragment: htmx swaps it where the answer goes, and as a whole page it
/// still reads well.
impl IntoResponse for StudioError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!("{self}");
        }
        let body = html! {
            div.problems role="alert" {
                @for line in self.lines() { p { (line) } }
            }
        };
        (status, body).into_response()
    }
}

/// The answer for a path no route knows (reached only once logged in).
pub async fn not_found() -> StudioError {
    StudioError::NotFound("no such page; start from the studio's home page".into())
}
