//! The OpenAPI document, generated: each handler carries its own
//! `#[utoipa::path]`, the request and answer types derive their schemas, and
//! `app::routes` mounts a handler and describes it in the same call, so the
//! document cannot list a route the server lacks or miss one it serves.

use axum::Extension;
use axum::body::Bytes;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::response::{Response as Described, ResponseBuilder};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr};
use utoipa::{Modify, ToResponse};

/// The name of the token's security scheme.
const BEARER: &str = "bearer";

/// The name of the `{code, message}` schema ([`crate::ErrorBody`]) and of
/// the response that carries it.
pub const ERROR: &str = "Error";

/// What the document says before any route is added: the API as a whole,
/// the token scheme and the error answer every route shares.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "semiclass-serve",
        version = "1",
        description = "Prediction API over exported semiclass packages. Every route but the health probes, the try-out page and /v1/activate needs `Authorization: Bearer <token>` (make one with `semiclass-serve token create`). Every /v1 error answers JSON {code, message}; the Open Inference Protocol's (/v2) answer {error}."
    ),
    components(schemas(crate::error::ErrorBody), responses(ErrorResponse)),
    modifiers(&TokenScheme)
)]
pub struct Base;

/// Declares the bearer token scheme that guarded operations name.
struct TokenScheme;

impl Modify for TokenScheme {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let scheme = HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build();
        components
            .security_schemes
            .insert(BEARER.into(), RefOr::T(SecurityScheme::Http(scheme)));
    }
}

/// `components/responses/Error`: the `{code, message}` answer of a failed
/// `/v1` request.
pub struct ErrorResponse;

impl<'r> ToResponse<'r> for ErrorResponse {
    fn response() -> (&'r str, RefOr<Described>) {
        let content = ContentBuilder::new()
            .schema(Some(Ref::from_schema_name(ERROR)))
            .build();
        let response = ResponseBuilder::new()
            .description("An error: `code` is stable, `message` says what to do.")
            .content("application/json", content)
            .build();
        (ERROR, response.into())
    }
}

/// Marks every operation of `openapi` as needing the token, with the 401
/// the token check answers: called on the routes that `require_token`
/// wraps, so the document says what the middleware does.
pub fn require_bearer(openapi: &mut OpenApi) {
    let unauthorized = RefOr::Ref(Ref::from_response_name(ERROR));
    for item in openapi.paths.paths.values_mut() {
        for operation in operations(item) {
            operation.security = Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
            operation
                .responses
                .responses
                .insert("401".into(), unauthorized.clone());
        }
    }
}

/// The operations of one path, whatever their method.
pub(crate) fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .flatten()
}

/// The document as JSON, serialised once when the server starts.
#[derive(Clone)]
pub struct Document(Bytes);

impl Document {
    pub fn new(openapi: &OpenApi) -> Document {
        // A document of strings, maps and numbers always serialises.
        let json = openapi.to_pretty_json().unwrap_or_default();
        Document(Bytes::from(json))
    }
}

/// `GET /openapi.json`.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "meta",
    summary = "This description",
    responses((status = 200, description = "OpenAPI 3.1, generated from the handlers", content_type = "application/json"))
)]
pub async fn document(Extension(document): Extension<Document>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], document.0).into_response()
}
