//! `GET /deploy/try` and `POST /deploy/try` (one image, multipart): the
//! image through every served model, side by side, each with its latency,
//! by the route `POST /v1/models/{id}/predict` runs (the `serving` crate's
//! preprocessing, batching and top-k).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Multipart, State};
use axum::http::StatusCode;
use maud::{Markup, html};
use semiclass_serve::predict::{PredictResponse, predict_image};

use crate::error::StudioError;
use crate::layout::{Section, page};
use crate::state::Studio;

/// Classes shown per model.
const TOPK: usize = 5;
/// The largest image accepted (serving's own limit is checked too).
pub const MAX_IMAGE_BYTES: usize = 16 << 20;

/// `GET /deploy/try`.
pub async fn form(State(studio): State<Arc<Studio>>) -> Markup {
    let served = studio.serving.view();
    page(
        "Try a model",
        Section::Deploy,
        html! {
            h1 { "Try an image" }
            @match served {
                None => p.card { "Nothing is being served: start serving packages on the " a href="/deploy" { "Deploy" } " page first." },
                Some(view) => {
                    p.hint { "Every served model answers, side by side: " @for (id, role) in &view.models { code { (id) } " (" (role) ") " } }
                    form.card.row #try-form hx-post="/deploy/try" hx-encoding="multipart/form-data" hx-target="#answers" {
                        input type="file" name="image" accept="image/*" required;
                        button type="submit" { "Predict" }
                    }
                    div #answers {}
                }
            }
        },
    )
}

/// `POST /deploy/try`: the answers as a fragment.
pub async fn predict(
    State(studio): State<Arc<Studio>>,
    form: Multipart,
) -> Result<Markup, StudioError> {
    let state = studio.serving.state().ok_or_else(|| {
        StudioError::Conflict("nothing is being served: start serving first".into())
    })?;
    let image = receive(form).await?;
    let mut answers = Vec::new();
    for id in state.models.keys() {
        let answer = predict_image(&state, id, image.clone(), TOPK)
            .await
            .map_err(|e| {
                let (status, _) = e.status_and_code();
                if status.is_client_error() && status != StatusCode::UNAUTHORIZED {
                    StudioError::Invalid(format!("the image: {}", e.public_message()))
                } else {
                    StudioError::Internal(e.to_string())
                }
            })?;
        let role = format!("{:?}", state.models[id].manifest.model.role).to_lowercase();
        answers.push((role, answer));
    }
    // The large model first, as the page reads left to right.
    answers.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(answers_part(&answers))
}

async fn receive(mut form: Multipart) -> Result<Bytes, StudioError> {
    let invalid = |e: axum::extract::multipart::MultipartError| {
        StudioError::Invalid(format!("the upload was cut or malformed: {e}"))
    };
    while let Some(field) = form.next_field().await.map_err(invalid)? {
        if field.name() == Some("image") {
            let bytes = field.bytes().await.map_err(invalid)?;
            if bytes.is_empty() {
                break;
            }
            return Ok(bytes);
        }
    }
    Err(StudioError::Invalid("choose an image to try".into()))
}

fn answers_part(answers: &[(String, PredictResponse)]) -> Markup {
    html! {
        div.grid2 {
            @for (role, answer) in answers {
                div.card.answer {
                    h2 { (role) " " span.hint { code { (answer.model) } } }
                    p.hint { "latency " span.latency { (format!("{:.1}", answer.latency_ms)) " ms" } }
                    table {
                        thead { tr { th { "class" } th.num { "score" } } }
                        tbody {
                            @for p in &answer.predictions { @for c in &p.top {
                                tr { td { (c.class_name) } td.num { (format!("{:.3}", c.score)) } }
                            } }
                        }
                    }
                }
            }
        }
    }
}
