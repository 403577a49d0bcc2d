//! `POST /v1/models/{id}/predict`: images in (multipart, a raw image body,
//! or JSON with base64), top-k classes out. Every image goes through the
//! shared preprocessing, so the server computes the tensor the trainer's
//! evaluation computed.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use http_body_util::BodyExt;
use semiclass_preprocess::{DecodeLimits, read_dimensions};
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use utoipa::{IntoParams, ToSchema};

use crate::decoding::Wanted;
use crate::engine::Answer;
use crate::error::ApiError;
use crate::limits::Limits;
use crate::openapi::ErrorResponse;
use crate::state::{AppState, Model};

/// Classes answered per image unless `topk` says otherwise.
pub const DEFAULT_TOPK: usize = 5;

const ACCEPTED: &str = "multipart/form-data, application/json, image/*, application/octet-stream";

/// `?topk=N`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PredictQuery {
    /// Classes per image (at most the model's classes).
    #[param(minimum = 1, default = json!(DEFAULT_TOPK))]
    pub topk: Option<usize>,
}

/// A JSON request: one image or several, base64 (a `data:` URL prefix is
/// allowed).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = JsonImages)]
struct JsonRequest {
    /// An image file, base64 (a `data:` URL is accepted).
    image: Option<String>,
    /// Image files, base64 each.
    images: Option<Vec<String>>,
    /// Classes per image; overrides `?topk`.
    #[schema(minimum = 1)]
    topk: Option<usize>,
}

/// An image file as sent: JPEG, PNG, BMP, WebP, GIF or TIFF.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)] // only described: the handler reads the bytes
struct ImageFile(Vec<u8>);

/// A multipart form: every part is an image file, whatever its name.
#[derive(ToSchema)]
#[allow(dead_code)] // only described: `multipart_images` reads the parts
struct ImageForm(std::collections::BTreeMap<String, ImageFile>);

/// One class of an answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ClassScore {
    pub class_id: usize,
    pub class_name: String,
    /// Softmax probability.
    pub score: f32,
}

/// The answer for one image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ImagePrediction {
    /// Position of the image in the request.
    pub index: usize,
    pub top: Vec<ClassScore>,
}

/// The answer of a prediction request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PredictResponse {
    pub model: String,
    pub predictions: Vec<ImagePrediction>,
    /// Time from the body being read to the answer (preprocessing,
    /// queueing, inference).
    pub latency_ms: f64,
}

/// The handler.
#[utoipa::path(
    post,
    path = "/v1/models/{id}/predict",
    tag = "v1",
    summary = "Top-k classes of one or more images",
    description = "Send a multipart form (every part is an image), a raw image body (image/* or application/octet-stream), or JSON with base64 images. Images whose header declares more pixels than the limit are refused before decoding (413).",
    params(("id" = String, Path, description = "a model id (GET /v1/models)"), PredictQuery),
    request_body(content(
        (inline(ImageForm) = "multipart/form-data"),
        (inline(ImageFile) = "image/*"),
        (inline(ImageFile) = "application/octet-stream"),
        (JsonRequest = "application/json"),
    )),
    responses(
        (status = 200, description = "predictions", body = PredictResponse),
        (status = 400, response = ErrorResponse),
        (status = 404, response = ErrorResponse),
        (status = 408, response = ErrorResponse),
        (status = 413, response = ErrorResponse),
        (status = 415, response = ErrorResponse),
        (status = 422, response = ErrorResponse),
        (status = 429, response = ErrorResponse),
        (status = 503, response = ErrorResponse),
    )
)]
pub async fn predict(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    query: Result<Query<PredictQuery>, QueryRejection>,
    request: Request,
) -> Result<Json<PredictResponse>, ApiError> {
    let model = state
        .models
        .get(&id)
        .cloned()
        .ok_or(ApiError::UnknownModel { id: id.clone() })?;
    let Query(query) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let (images, body_topk) = read_images(request, &state).await?;
    let topk = check_topk(body_topk.or(query.topk), model.batcher.classes())?;
    answer_images(&state, (id, &model), images, topk)
        .await
        .map(Json)
}

/// One image through model `id` exactly as the predict route runs it (the
/// same preprocessing, batching and top-k), for a caller in this process:
/// the studio's try-out page.
pub async fn predict_image(
    state: &Arc<AppState>,
    id: &str,
    image: Bytes,
    topk: usize,
) -> Result<PredictResponse, ApiError> {
    let model = state
        .models
        .get(id)
        .cloned()
        .ok_or(ApiError::UnknownModel { id: id.to_string() })?;
    let topk = check_topk(Some(topk), model.batcher.classes())?;
    answer_images(state, (id.to_string(), &model), vec![image], topk).await
}

/// Preprocesses, infers and ranks `images`; the latency counts from here.
async fn answer_images(
    state: &Arc<AppState>,
    (id, model): (String, &Arc<Model>),
    images: Vec<Bytes>,
    topk: usize,
) -> Result<PredictResponse, ApiError> {
    let started = Instant::now();
    check_request_pixels(&images, &state.limits).await?;
    let pending = submit_all(state, model, images).await?;
    let mut predictions = Vec::with_capacity(pending.len());
    for (index, answer) in pending.into_iter().enumerate() {
        let logits = answer
            .await
            .map_err(|_| ApiError::Internal("the inference workers stopped".into()))?
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let top = top_k(&logits, topk, &model.manifest.model.class_names);
        predictions.push(ImagePrediction { index, top });
    }
    Ok(PredictResponse {
        model: id,
        predictions,
        latency_ms: started.elapsed().as_secs_f64() * 1e3,
    })
}

/// Refuses a request whose images' headers declare more pixels together
/// than the request budget, before any of them is decoded. A single image
/// within the per-image limit needs no look (unless the budget is lower).
pub(crate) async fn check_request_pixels(
    images: &[Bytes],
    limits: &Limits,
) -> Result<(), ApiError> {
    if images.len() < 2 && limits.max_request_pixels >= limits.max_pixels {
        return Ok(());
    }
    let images = images.to_vec();
    // Reading a header can copy the whole file (JPEG): off the async workers.
    let declared = tokio::task::spawn_blocking(move || {
        images
            .iter()
            .filter_map(|bytes| read_dimensions(bytes).ok())
            .map(|(w, h)| u64::from(w) * u64::from(h))
            .sum::<u64>()
    })
    .await
    .map_err(|e| ApiError::Internal(format!("reading image headers: {e}")))?;
    if declared > limits.max_request_pixels {
        return Err(ApiError::RequestTooManyPixels {
            megapixels: declared as f64 / 1e6,
            limit_mp: limits.max_request_pixels as f64 / 1e6,
        });
    }
    Ok(())
}

/// Preprocesses every image through the decode pool and queues each for
/// inference as soon as its tensor is ready. Dropping this future (the
/// client is gone, or the request timed out) stops the decodes it started.
pub(crate) async fn submit_all(
    state: &Arc<AppState>,
    model: &Arc<Model>,
    images: Vec<Bytes>,
) -> Result<Vec<Answer>, ApiError> {
    let spec = Arc::new(model.manifest.model.preprocess.clone());
    let limits = DecodeLimits {
        max_pixels: state.limits.max_pixels,
    };
    let wanted = Wanted::default();
    let mut decodes = JoinSet::new();
    let mut announcements = Vec::with_capacity(images.len());
    for (index, bytes) in images.into_iter().enumerate() {
        announcements.push(Some(model.batcher.announce()));
        let (state, spec, stop) = (state.clone(), spec.clone(), wanted.stop_flag());
        decodes.spawn(async move {
            let tensor = state.decoder.preprocess(bytes, limits, spec, stop).await;
            (index, tensor)
        });
    }
    let mut answers: Vec<Option<Answer>> = (0..announcements.len()).map(|_| None).collect();
    while let Some(done) = decodes.join_next().await {
        let (index, tensor) =
            done.map_err(|e| ApiError::Internal(format!("preprocessing: {e}")))?;
        let tensor = tensor.map_err(|e| ApiError::image(index, e))?;
        let answer = model
            .batcher
            .submit(tensor.data)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        answers[index] = Some(answer);
        announcements[index] = None;
    }
    Ok(answers.into_iter().flatten().collect())
}

fn check_topk(topk: Option<usize>, classes: usize) -> Result<usize, ApiError> {
    match topk {
        None => Ok(DEFAULT_TOPK.min(classes)),
        Some(0) => Err(ApiError::BadRequest("topk must be at least 1".into())),
        Some(k) => Ok(k.min(classes)),
    }
}

/// The `k` most probable classes, most probable first (ties by class id).
pub fn top_k(logits: &[f32], k: usize, names: &[String]) -> Vec<ClassScore> {
    let probabilities = softmax(logits);
    ranked(&probabilities)
        .into_iter()
        .take(k)
        .map(|class_id| ClassScore {
            class_id,
            class_name: names.get(class_id).cloned().unwrap_or_default(),
            score: probabilities[class_id],
        })
        .collect()
}

/// Probabilities from logits (shifted by the largest, so no `exp`
/// overflows).
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

/// Class ids, most probable first (ties by class id).
pub fn ranked(scores: &[f32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    order
}

/// The images of the request, and a `topk` given in a JSON body.
async fn read_images(
    request: Request,
    state: &AppState,
) -> Result<(Vec<Bytes>, Option<usize>), ApiError> {
    let kind = BodyKind::of(request.headers())?;
    let limit = state.limits.body_timeout;
    let read = read_body(request, state.limits.max_body_bytes);
    let (parts, body) =
        tokio::time::timeout(limit, read)
            .await
            .map_err(|_| ApiError::BodyTimeout {
                limit_ms: limit.as_millis() as u64,
            })??;
    let (images, topk) = match kind {
        BodyKind::Raw => (vec![body], None),
        BodyKind::Json => json_images(&body)?,
        BodyKind::Multipart => (multipart_images(parts, body).await?, None),
    };
    if images.is_empty() {
        return Err(ApiError::BadRequest("the request holds no image".into()));
    }
    if images.len() > state.limits.max_images {
        return Err(ApiError::BadRequest(format!(
            "{} images in one request, more than the limit of {}: split the request",
            images.len(),
            state.limits.max_images
        )));
    }
    Ok((images, topk))
}

enum BodyKind {
    Raw,
    Json,
    Multipart,
}

impl BodyKind {
    fn of(headers: &HeaderMap) -> Result<BodyKind, ApiError> {
        let found = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let mime = found
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match mime.as_str() {
            "multipart/form-data" => Ok(BodyKind::Multipart),
            "application/json" => Ok(BodyKind::Json),
            "application/octet-stream" => Ok(BodyKind::Raw),
            m if m.starts_with("image/") => Ok(BodyKind::Raw),
            _ => Err(ApiError::UnsupportedMediaType {
                found: found.to_string(),
                accepted: ACCEPTED.to_string(),
            }),
        }
    }
}

/// The whole body, refusing one larger than `limit` (by its declared
/// length before reading, by its actual length while reading).
pub async fn read_body(request: Request, limit: usize) -> Result<(Parts, Bytes), ApiError> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::BodyTooLarge { limit });
    }
    let (parts, mut body) = request.into_parts();
    let mut bytes = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|e| ApiError::BadRequest(format!("cannot read the request body: {e}")))?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        if bytes.len() + data.len() > limit {
            drain(body).await;
            return Err(ApiError::BodyTooLarge { limit });
        }
        bytes.extend_from_slice(data);
    }
    Ok((parts, Bytes::from(bytes)))
}

/// What the server still reads of a body it refused while reading it (a
/// chunked upload that outgrew the limit), and for how long at most.
const DRAIN_BYTES: usize = 8 << 20;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// Reads and drops the rest of a refused body, up to [`DRAIN_BYTES`] and
/// [`DRAIN_TIME`], as nginx's and Apache's lingering close do. Closing with
/// the client's data unread makes the kernel reset the connection, and a
/// client still sending its body then sees "connection reset" or "broken
/// pipe" instead of the 413 that says what to do.
async fn drain(mut body: Body) {
    let mut left = DRAIN_BYTES;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while left > 0 {
            match body.frame().await {
                Some(Ok(frame)) => {
                    left = left.saturating_sub(frame.data_ref().map_or(0, |d| d.len()));
                }
                _ => return,
            }
        }
    })
    .await;
}

fn json_images(body: &[u8]) -> Result<(Vec<Bytes>, Option<usize>), ApiError> {
    let request: JsonRequest = serde_json::from_slice(body).map_err(|e| {
        ApiError::BadRequest(format!(
            "JSON body: {e}; expected {{\"image\": \"<base64>\"}} or {{\"images\": [...]}}, optional \"topk\""
        ))
    })?;
    let encoded: Vec<String> = request
        .image
        .into_iter()
        .chain(request.images.into_iter().flatten())
        .collect();
    let images = encoded
        .iter()
        .enumerate()
        .map(|(index, text)| {
            let data = text
                .split_once(";base64,")
                .map_or(text.as_str(), |(_, d)| d);
            BASE64
                .decode(data.trim())
                .map(Bytes::from)
                .map_err(|e| ApiError::BadRequest(format!("image {index}: not valid base64: {e}")))
        })
        .collect::<Result<_, _>>()?;
    Ok((images, request.topk))
}

/// Every part of a multipart body is an image.
async fn multipart_images(parts: Parts, body: Bytes) -> Result<Vec<Bytes>, ApiError> {
    let request = Request::from_parts(parts, Body::from(body));
    let mut multipart = Multipart::from_request(request, &())
        .await
        .map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let mut images = Vec::new();
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| ApiError::BadRequest(format!("multipart body: {}", e.body_text())))?
    {
        let bytes = field
            .bytes()
            .await
            .map_err(|e| ApiError::BadRequest(format!("multipart body: {}", e.body_text())))?;
        images.push(bytes);
    }
    Ok(images)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_is_a_sorted_softmax() {
        let names: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let top = top_k(&[1.0, 3.0, 1.0], 2, &names);
        assert_eq!(top.len(), 2);
        assert_eq!((top[0].class_id, top[0].class_name.as_str()), (1, "b"));
        assert_eq!(top[1].class_id, 0, "ties go to the lower class id");
        let e = std::f32::consts::E;
        let expected = e * e / (e * e + 2.0);
        assert!((top[0].score - expected).abs() < 1e-6);
        let all: f32 = top_k(&[1.0, 3.0, 1.0], 3, &names)
            .iter()
            .map(|c| c.score)
            .sum();
        assert!((all - 1.0).abs() < 1e-6);
    }

    #[test]
    fn topk_defaults_clamps_and_refuses_zero() {
        assert_eq!(check_topk(None, 3).unwrap(), 3);
        assert_eq!(check_topk(None, 10).unwrap(), DEFAULT_TOPK);
        assert_eq!(check_topk(Some(50), 10).unwrap(), 10);
        assert!(check_topk(Some(0), 10).is_err());
    }

    #[test]
    fn json_bodies_take_base64_and_data_urls() {
        let body = br#"{"image": "aGk=", "images": ["data:image/png;base64,eW8="], "topk": 2}"#;
        let (images, topk) = json_images(body).unwrap();
        assert_eq!(images, vec![Bytes::from("hi"), Bytes::from("yo")]);
        assert_eq!(topk, Some(2));
        let err = json_images(br#"{"images": ["%%"]}"#).unwrap_err();
        assert!(
            err.to_string().contains("image 0: not valid base64"),
            "{err}"
        );
        let err = json_images(br#"{"picture": "aGk="}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }
}
