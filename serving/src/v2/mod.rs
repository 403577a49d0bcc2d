//! The Open Inference Protocol (KServe v2), which Triton, KServe, Seldon
//! and MLServer speak, beside the server's own `/v1` API: their clients
//! (e.g. `tritonclient[http]`) call a semiclass server unchanged.
//!
//! A model takes one input per request, either
//! - `image`, `BYTES`, shape `[n]`: image files (JPEG, PNG, ...), which the
//!   server decodes and preprocesses with the shared preprocessing, as for
//!   `/v1/.../predict`; or
//! - the ONNX graph's own input, `FP32`, shape `[n, 3, size, size]`: tensors
//!   the caller preprocessed itself;
//!
//! and answers `probabilities`, `FP32` `[n, classes]` (softmax), or with
//! Triton's classification extension (`"parameters": {"classification":
//! k}`) the k best as `BYTES` `"score:index:label"`. Tensors travel as JSON
//! or, with the binary-data extension, as bytes after the JSON.

pub mod wire;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use semiclass_manifest::PreprocessSpec;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn, Paths};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{RefOr, Required};
use utoipa_axum::router::UtoipaMethodRouter;

use crate::error::ApiError;
use crate::openapi::{self, ErrorResponse};
use crate::predict::{check_request_pixels, read_body, softmax, submit_all};
use crate::state::{AppState, Model};
use wire::{
    Elements, HEADER_LENGTH, InferRequest, OutputData, Parsed, RequestedOutput, ResponseOutput,
};

/// The input that takes image files.
pub const IMAGE_INPUT: &str = "image";
/// The one output.
pub const PROBABILITIES: &str = "probabilities";
/// Every model has this one version.
pub const VERSION: &str = "1";

/// A failed request as the protocol answers it: `{"error": "..."}`.
#[derive(Debug)]
pub struct V2Error {
    status: StatusCode,
    message: String,
}

impl V2Error {
    fn bad(message: impl Into<String>) -> V2Error {
        V2Error {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    fn unknown_model(name: &str) -> V2Error {
        V2Error {
            status: StatusCode::NOT_FOUND,
            message: format!("no model {name:?}: GET /v1/models lists the served ones"),
        }
    }
}

impl From<ApiError> for V2Error {
    fn from(err: ApiError) -> V2Error {
        V2Error {
            status: err.status_and_code().0,
            message: err.public_message(),
        }
    }
}

/// The protocol's error body.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = V2Error)]
pub struct V2ErrorBody {
    pub error: String,
}

impl IntoResponse for V2Error {
    fn into_response(self) -> Response {
        let body = V2ErrorBody {
            error: self.message,
        };
        (self.status, Json(body)).into_response()
    }
}

/// `GET /v2`'s answer.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = V2ServerMetadata)]
pub struct ServerMetadata {
    name: &'static str,
    version: &'static str,
    extensions: Vec<&'static str>,
}

/// `GET /v2`.
#[utoipa::path(
    get,
    path = "/v2",
    tag = "v2",
    summary = "Open Inference Protocol: server metadata",
    responses((status = 200, description = "name, version, extensions", body = ServerMetadata))
)]
pub async fn server_metadata() -> Json<ServerMetadata> {
    Json(ServerMetadata {
        name: "semiclass-serve",
        version: env!("CARGO_PKG_VERSION"),
        extensions: vec!["binary_tensor_data", "classification"],
    })
}

/// `GET /v2/health/live`'s answer.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = V2Live)]
pub struct Live {
    live: bool,
}

/// `GET /v2/health/live`: the process answers.
#[utoipa::path(
    get,
    path = "/v2/health/live",
    tag = "v2",
    summary = "Open Inference Protocol: liveness",
    responses((status = 200, description = "alive", body = Live))
)]
pub async fn live() -> Json<Live> {
    Json(Live { live: true })
}

/// The answer of the readiness routes.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = V2Ready)]
pub struct Readiness {
    ready: bool,
}

/// `GET /v2/health/ready`: every model is loaded and the server is not
/// shutting down.
#[utoipa::path(
    get,
    path = "/v2/health/ready",
    tag = "v2",
    summary = "Open Inference Protocol: readiness",
    responses(
        (status = 200, description = "ready", body = Readiness),
        (status = 503, description = "starting or stopping", body = Readiness),
    )
)]
pub async fn ready(State(state): State<Arc<AppState>>) -> Response {
    readiness(state.ready.load(Ordering::Acquire))
}

fn readiness(ready: bool) -> Response {
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(Readiness { ready })).into_response()
}

/// A model route, also under `/v2/models/{id}/versions/{version}` (the
/// protocol's versioned paths): the same handler, described as the
/// unversioned path plus the version (`model_of` checks it).
pub fn versioned<S>((schemas, paths, router): UtoipaMethodRouter<S>) -> UtoipaMethodRouter<S> {
    let mut versions = Paths::new();
    for (path, mut item) in paths.paths {
        let path = path.replacen(MODEL_PATH, VERSION_PATH, 1);
        for operation in openapi::operations(&mut item) {
            let parameters = operation.parameters.get_or_insert_with(Vec::new);
            // After `{id}`, in the order of the path.
            let at = parameters.len().min(1);
            parameters.insert(at, RefOr::T(version_parameter()));
            operation.operation_id = operation.operation_id.take().map(|id| id + "_version");
        }
        versions.paths.insert(path, item);
    }
    (schemas, versions, router)
}

const MODEL_PATH: &str = "/v2/models/{id}";
const VERSION_PATH: &str = "/v2/models/{id}/versions/{version}";

fn version_parameter() -> Parameter {
    let version = ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some([VERSION]));
    ParameterBuilder::new()
        .name("version")
        .parameter_in(ParameterIn::Path)
        .required(Required::True)
        .description(Some("every model has one version"))
        .schema(Some(version))
        .build()
}

/// The model a `/v2/models/{id}[/versions/{version}]/...` path names.
fn model_of(
    state: &AppState,
    params: &HashMap<String, String>,
) -> Result<(String, Arc<Model>), V2Error> {
    let name = params.get("id").cloned().unwrap_or_default();
    let model = state
        .models
        .get(&name)
        .cloned()
        .ok_or_else(|| V2Error::unknown_model(&name))?;
    match params.get("version") {
        Some(version) if version != VERSION => Err(V2Error {
            status: StatusCode::NOT_FOUND,
            message: format!("model {name:?} has only version {VERSION}, not {version:?}"),
        }),
        _ => Ok((name, model)),
    }
}

/// `GET /v2/models/{id}/ready`.
#[utoipa::path(
    get,
    path = "/v2/models/{id}/ready",
    tag = "v2",
    summary = "Open Inference Protocol: model readiness",
    params(("id" = String, Path, description = "a model id (GET /v1/models)")),
    responses(
        (status = 200, description = "ready", body = Readiness),
        (status = 503, description = "starting or stopping", body = Readiness),
        (status = 404, description = "no such model or version", body = V2ErrorBody),
    )
)]
pub async fn model_ready(
    State(state): State<Arc<AppState>>,
    Path(params): Path<HashMap<String, String>>,
) -> Result<Response, V2Error> {
    model_of(&state, &params)?;
    Ok(readiness(state.ready.load(Ordering::Acquire)))
}

/// A model's metadata: the inputs a request may use and the output.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = V2ModelMetadata)]
pub struct ModelMetadata {
    name: String,
    versions: Vec<&'static str>,
    platform: &'static str,
    /// `image` (BYTES, image files) and the model's FP32 input.
    inputs: Vec<TensorMetadata>,
    /// `probabilities`.
    outputs: Vec<TensorMetadata>,
    parameters: ModelParameters,
}

/// One tensor of [`ModelMetadata`]; -1 is a free dimension.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = V2TensorMetadata)]
pub struct TensorMetadata {
    name: String,
    datatype: &'static str,
    shape: Vec<i64>,
}

/// What a caller needs to preprocess images itself and read the output.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = V2ModelParameters)]
pub struct ModelParameters {
    class_names: Vec<String>,
    /// The package's preprocessing (resize, crop, mean, std).
    #[schema(value_type = Object)]
    preprocess: PreprocessSpec,
}

/// `GET /v2/models/{id}` (and under `/versions/{version}`: [`versioned`]).
#[utoipa::path(
    get,
    path = "/v2/models/{id}",
    tag = "v2",
    summary = "Open Inference Protocol: model metadata",
    description = "the two inputs a request may use (`image` BYTES, the model's FP32 input), the `probabilities` output, the class names and preprocessing",
    params(("id" = String, Path, description = "a model id (GET /v1/models)")),
    responses(
        (status = 200, description = "the model", body = ModelMetadata),
        (status = 404, description = "no such model or version", body = V2ErrorBody),
    )
)]
pub async fn model_metadata(
    State(state): State<Arc<AppState>>,
    Path(params): Path<HashMap<String, String>>,
) -> Result<Json<ModelMetadata>, V2Error> {
    metadata(&state, &params)
}

fn metadata(
    state: &AppState,
    params: &HashMap<String, String>,
) -> Result<Json<ModelMetadata>, V2Error> {
    let (name, model) = model_of(state, params)?;
    let spec = &model.manifest.model;
    let side = i64::from(spec.input_size);
    let tensor = |name: &str, datatype, shape| TensorMetadata {
        name: name.to_string(),
        datatype,
        shape,
    };
    Ok(Json(ModelMetadata {
        name,
        versions: vec![VERSION],
        platform: "onnxruntime_onnx",
        inputs: vec![
            tensor(IMAGE_INPUT, "BYTES", vec![-1]),
            tensor(&spec.input_name, "FP32", vec![-1, 3, side, side]),
        ],
        outputs: vec![tensor(
            PROBABILITIES,
            "FP32",
            vec![-1, spec.class_names.len() as i64],
        )],
        parameters: ModelParameters {
            class_names: spec.class_names.clone(),
            preprocess: spec.preprocess.clone(),
        },
    }))
}

/// `POST /v2/models/{id}/infer` (and under `/versions/{version}`:
/// [`versioned`]).
#[utoipa::path(
    post,
    path = "/v2/models/{id}/infer",
    tag = "v2",
    summary = "Open Inference Protocol: inference",
    description = INFER_DESCRIPTION,
    params(("id" = String, Path, description = "a model id (GET /v1/models)"), InferHeader),
    request_body(description = INFER_BODY, content(
        (InferRequest = "application/json"),
        ("application/octet-stream"),
    )),
    responses(
        (status = 200, description = INFER_ANSWER, content(
            (InferResponse = "application/json"),
            ("application/octet-stream"),
        )),
        (status = 400, description = "the request is wrong", body = V2ErrorBody),
        (status = 404, description = "no such model or version", body = V2ErrorBody),
        (status = 408, description = "the body did not arrive in time", body = V2ErrorBody),
        (status = 413, description = "too large a body or too many pixels", body = V2ErrorBody),
        (status = 422, description = "an image cannot be decoded", body = V2ErrorBody),
        (status = 429, response = ErrorResponse),
        (status = 503, response = ErrorResponse),
    )
)]
pub async fn infer(
    State(state): State<Arc<AppState>>,
    Path(params): Path<HashMap<String, String>>,
    request: Request,
) -> Result<Response, V2Error> {
    infer_model(&state, &params, request).await
}

const INFER_DESCRIPTION: &str =
    "KServe v2 / Triton HTTP inference with the binary-data and classification extensions";
const INFER_BODY: &str = "one input, `image` (BYTES, image files, shape [n]) or the model's FP32 input ([n,3,size,size], preprocessed); as application/octet-stream, the JSON followed by the tensors' bytes, the JSON's length in Inference-Header-Content-Length";
const INFER_ANSWER: &str = "`probabilities` (FP32 [n, classes]) or its classification; as application/octet-stream, binary outputs follow the JSON, whose length is in Inference-Header-Content-Length";

/// The binary-data extension's header, as a documented parameter.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // only described: `header_length` reads it
struct InferHeader {
    /// The length of the JSON at the start of a body that carries binary
    /// tensors after it.
    #[param(rename = "Inference-Header-Content-Length")]
    inference_header_content_length: Option<u64>,
}

/// The answer's JSON.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = V2InferResponse)]
pub struct InferResponse {
    model_name: String,
    model_version: &'static str,
    /// The request's `id`, echoed.
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    outputs: Vec<ResponseOutput>,
}

async fn infer_model(
    state: &Arc<AppState>,
    params: &HashMap<String, String>,
    request: Request,
) -> Result<Response, V2Error> {
    let (name, model) = model_of(state, params)?;
    let header_length = header_length(&request)?;
    let limit = state.limits.body_timeout;
    let (_, body) = tokio::time::timeout(limit, read_body(request, state.limits.max_body_bytes))
        .await
        .map_err(|_| ApiError::BodyTimeout {
            limit_ms: limit.as_millis() as u64,
        })??;
    let started = Instant::now();
    let parsed = wire::parse(&body, header_length).map_err(V2Error::bad)?;
    let logits = run(state, &model, parsed.elements_of_one_input()?).await?;
    let probabilities: Vec<Vec<f32>> = logits.iter().map(|l| softmax(l)).collect();
    let response = answer(&name, &model, &parsed, &probabilities)?;
    tracing::debug!(
        "v2 infer {name}: {} images in {:.1} ms",
        probabilities.len(),
        started.elapsed().as_secs_f64() * 1e3
    );
    Ok(response)
}

fn header_length(request: &Request) -> Result<Option<usize>, V2Error> {
    request
        .headers()
        .get(HEADER_LENGTH)
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or_else(|| V2Error::bad("Inference-Header-Content-Length is not a number"))
        })
        .transpose()
}

/// What one request asks the model to run.
enum Work<'a> {
    Images(Vec<Bytes>),
    /// Preprocessed tensors, back to back, and their count.
    Tensors(&'a [f32], usize),
}

impl Parsed {
    fn elements_of_one_input(&self) -> Result<(&wire::RequestInput, &Elements), V2Error> {
        match (self.request.inputs.as_slice(), self.elements.as_slice()) {
            ([input], [elements]) => Ok((input, elements)),
            _ => Err(V2Error::bad(format!(
                "{} inputs: send exactly one, {IMAGE_INPUT:?} (BYTES, image files) or the model's FP32 input (GET /v2/models/NAME lists both)",
                self.request.inputs.len()
            ))),
        }
    }
}

/// Checks the one input against the model and runs it; the logits of
/// every image, in order.
async fn run(
    state: &Arc<AppState>,
    model: &Arc<Model>,
    (input, elements): (&wire::RequestInput, &Elements),
) -> Result<Vec<Vec<f32>>, V2Error> {
    let work = work_of(model, input, elements)?;
    let count = match &work {
        Work::Images(images) => images.len(),
        Work::Tensors(_, n) => *n,
    };
    if count == 0 || count > state.limits.max_images {
        return Err(V2Error::bad(format!(
            "{count} images in one request: send 1 to {}",
            state.limits.max_images
        )));
    }
    let answers = match work {
        Work::Images(images) => {
            check_request_pixels(&images, &state.limits).await?;
            submit_all(state, model, images).await?
        }
        Work::Tensors(data, n) => {
            let per = data.len() / n;
            data.chunks(per)
                .map(|sample| model.batcher.submit(sample.to_vec()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ApiError::Internal(e.to_string()))?
        }
    };
    let mut logits = Vec::with_capacity(answers.len());
    for answer in answers {
        let row = answer
            .await
            .map_err(|_| ApiError::Internal("the inference workers stopped".into()))?
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        logits.push(row);
    }
    Ok(logits)
}

fn work_of<'a>(
    model: &Model,
    input: &wire::RequestInput,
    elements: &'a Elements,
) -> Result<Work<'a>, V2Error> {
    let spec = &model.manifest.model;
    let side = i64::from(spec.input_size);
    match elements {
        Elements::Bytes(images) if input.name == IMAGE_INPUT => match input.shape.as_slice() {
            [_] | [_, 1] => Ok(Work::Images(images.clone())),
            shape => Err(V2Error::bad(format!(
                "input {IMAGE_INPUT:?}: shape {shape:?}; send [n], one image file each"
            ))),
        },
        Elements::Fp32(data) if input.name == spec.input_name => match input.shape.as_slice() {
            &[n, 3, h, w] if h == side && w == side => Ok(Work::Tensors(data, n as usize)),
            shape => Err(V2Error::bad(format!(
                "input {:?}: shape {shape:?}; this model takes [n, 3, {side}, {side}] preprocessed as GET /v2/models/NAME says, or image files as {IMAGE_INPUT:?}",
                spec.input_name
            ))),
        },
        _ => Err(V2Error::bad(format!(
            "input {:?} ({}): this model takes {IMAGE_INPUT:?} (BYTES, image files) or {:?} (FP32 tensors)",
            input.name, input.datatype, spec.input_name
        ))),
    }
}

/// The answer's body: JSON, then the outputs sent as bytes.
fn answer(
    name: &str,
    model: &Model,
    parsed: &Parsed,
    probabilities: &[Vec<f32>],
) -> Result<Response, V2Error> {
    let request = &parsed.request;
    let binary_default = request
        .parameters
        .get("binary_data_output")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let all = [RequestedOutput {
        name: PROBABILITIES.into(),
        parameters: Default::default(),
    }];
    let requested = request.outputs.as_deref().unwrap_or(&all);
    let mut outputs = Vec::new();
    let mut tail = Vec::new();
    for wanted in requested {
        if wanted.name != PROBABILITIES {
            return Err(V2Error::bad(format!(
                "no output {:?}: the model answers {PROBABILITIES:?}",
                wanted.name
            )));
        }
        let (data, shape) = output_values(model, wanted, probabilities);
        let (output, bytes) = data.encode(&wanted.name, shape, wanted.binary(binary_default));
        outputs.push(output);
        tail.extend(bytes.unwrap_or_default());
    }
    let document = InferResponse {
        model_name: name.to_string(),
        model_version: VERSION,
        id: request.id.clone(),
        outputs,
    };
    let json = serde_json::to_vec(&document)
        .map_err(|e| ApiError::Internal(format!("writing the answer: {e}")))?;
    if tail.is_empty() {
        return Ok((
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            json,
        )
            .into_response());
    }
    let length = json.len();
    let mut body = json;
    body.extend(tail);
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (
                header::HeaderName::from_static(HEADER_LENGTH),
                HeaderValue::from(length),
            ),
        ],
        body,
    )
        .into_response())
}

/// The probabilities, or with `classification: k` the k best classes of
/// each image as `"score:index:label"` (Triton's format).
fn output_values(
    model: &Model,
    wanted: &RequestedOutput,
    probabilities: &[Vec<f32>],
) -> (OutputData, Vec<usize>) {
    let names = &model.manifest.model.class_names;
    let n = probabilities.len();
    match wanted.classification() {
        Some(k) => {
            let k = (k as usize).clamp(1, names.len());
            let labels = probabilities
                .iter()
                .flat_map(|p| {
                    crate::predict::ranked(p)
                        .into_iter()
                        .take(k)
                        .map(|i| format!("{:.6}:{i}:{}", p[i], names[i]))
                })
                .collect();
            (OutputData::Bytes(labels), vec![n, k])
        }
        None => (
            OutputData::Fp32(probabilities.concat()),
            vec![n, names.len()],
        ),
    }
}
