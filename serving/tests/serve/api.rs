//! The API driven through the router with `oneshot`, no socket.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use semiclass_serve::predict::PredictResponse;
use semiclass_serve::{AppState, app};

use crate::common::*;

fn predict_uri(id: &str, query: &str) -> String {
    format!("/v1/models/{id}/predict{query}")
}

fn answer(body: &[u8]) -> PredictResponse {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)))
}

/// The answer's top classes carry the scores the shared preprocessing and
/// the model's weights give, most probable first.
fn assert_scores(
    fixture: &Fixture,
    id: &str,
    image: &[u8],
    top: &[semiclass_serve::predict::ClassScore],
) {
    let expected = fixture.expected_scores(id, image);
    let mut order: Vec<usize> = (0..expected.len()).collect();
    order.sort_by(|&a, &b| expected[b].total_cmp(&expected[a]));
    for (rank, class) in top.iter().enumerate() {
        assert_eq!(
            class.class_id, order[rank],
            "rank {rank} of {id}: {top:?} vs {expected:?}"
        );
        assert_eq!(class.class_name, CLASSES[class.class_id]);
        assert!(
            (class.score - expected[class.class_id]).abs() < 1e-4,
            "{top:?} vs {expected:?}"
        );
    }
}

#[tokio::test]
async fn models_are_listed_with_their_role_and_classes() {
    let fixture = Fixture::new();
    let large_id = fixture.large_id();
    let small_id = fixture.small_id();
    let app = app(fixture.state());
    let (status, _, body) = send(&app, get("/v1/models", Some(&fixture.bearer()))).await;
    assert_eq!(status, StatusCode::OK);
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let models = json["models"].as_array().unwrap();
    let ids: Vec<&str> = models.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [large_id, small_id]);
    assert_eq!(models[0]["role"], "large");
    assert_eq!(models[1]["role"], "small");
    assert_eq!(models[0]["class_names"][2], "康乃馨");
    assert_eq!(models[0]["model_sha256"].as_str().unwrap().len(), 64);
}

#[tokio::test]
async fn raw_multipart_and_json_bodies_give_the_evaluation_scores() {
    let fixture = Fixture::new();
    let large_id = fixture.large_id();
    let small_id = fixture.small_id();
    let app = app(fixture.state());
    let images: Vec<Vec<u8>> = (0..3).map(|i| png(40 + i * 9, 30, i as u8)).collect();
    for id in [large_id, small_id] {
        let raw = post(
            &fixture,
            &predict_uri(id, "?topk=3"),
            "image/png",
            images[0].clone(),
        );
        let (status, _, body) = send(&app, raw).await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        let raw = answer(&body);
        assert_eq!((raw.model.as_str(), raw.predictions.len()), (id, 1));
        assert_eq!(raw.predictions[0].top.len(), 3);
        assert_scores(&fixture, id, &images[0], &raw.predictions[0].top);
    }
    let (content_type, body) = multipart(&images);
    let (status, _, body) = send(
        &app,
        post(&fixture, &predict_uri(large_id, ""), &content_type, body),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let many = answer(&body);
    assert_eq!(many.predictions.len(), 3);
    for (i, prediction) in many.predictions.iter().enumerate() {
        assert_eq!(prediction.index, i);
        assert_eq!(prediction.top.len(), 5, "topk defaults to 5");
        assert_scores(&fixture, large_id, &images[i], &prediction.top);
    }
    let json = serde_json::json!({"images": [BASE64.encode(&images[1]), BASE64.encode(&images[2])], "topk": 2});
    let request = post(
        &fixture,
        &predict_uri(small_id, "?topk=6"),
        "application/json",
        json.to_string().into(),
    );
    let (status, _, body) = send(&app, request).await;
    assert_eq!(status, StatusCode::OK);
    let json = answer(&body);
    assert_eq!(json.predictions[1].top.len(), 2, "the body's topk wins");
    assert_scores(&fixture, small_id, &images[2], &json.predictions[1].top);
}

#[tokio::test]
async fn every_bad_input_gets_a_4xx_json_error_and_serving_goes_on() {
    let fixture = Fixture::new();
    let large_id = fixture.large_id();
    let app = app(fixture.state());
    let uri = predict_uri(large_id, "");
    let good = png(20, 20, 1);
    let (mp_type, empty_mp) = multipart(&[]);
    let (_, nine) = multipart(&vec![good.clone(); 9]);
    let json = "application/json";
    // (query, content type, body, status, code) of posts to the large model.
    let posts: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        (
            "",
            "text/plain",
            good.clone(),
            415,
            "unsupported_media_type",
        ),
        ("", "", good.clone(), 415, "unsupported_media_type"),
        ("", "image/png", vec![0; 2 << 20], 413, "body_too_large"),
        (
            "",
            "image/png",
            png_bomb(100_000, 100_000),
            413,
            "too_many_pixels",
        ),
        ("", "image/png", b"not an image".to_vec(), 422, "bad_image"),
        (
            "",
            "image/png",
            good[..good.len() / 2].to_vec(),
            422,
            "bad_image",
        ),
        ("", "image/png", Vec::new(), 422, "bad_image"),
        ("", "image/gif", zero_gif(), 422, "bad_image"),
        ("", json, b"{\"image\": 3}".to_vec(), 400, "bad_request"),
        ("", json, b"{}".to_vec(), 400, "bad_request"),
        ("", &mp_type, empty_mp, 400, "bad_request"),
        (
            "",
            "multipart/form-data",
            b"--x\r\n".to_vec(),
            400,
            "bad_request",
        ),
        ("", &mp_type, nine, 400, "bad_request"),
        ("?topk=0", "image/png", good.clone(), 400, "bad_request"),
        ("?topk=x", "image/png", good.clone(), 400, "bad_request"),
        ("?k=1", "image/png", good.clone(), 400, "bad_request"),
    ];
    let mut cases: Vec<(Request<Body>, u16, &str)> = posts
        .into_iter()
        .map(|(query, content_type, body, status, code)| {
            let uri = predict_uri(large_id, query);
            (post(&fixture, &uri, content_type, body), status, code)
        })
        .collect();
    let unknown = post(
        &fixture,
        &predict_uri("nope", ""),
        "image/png",
        good.clone(),
    );
    cases.push((unknown, 404, "unknown_model"));
    cases.push((
        get("/v2/nothing", Some(&fixture.bearer())),
        404,
        "not_found",
    ));
    cases.push((
        get(&uri, Some(&fixture.bearer())),
        405,
        "method_not_allowed",
    ));
    cases.push((get("/v1/activate", None), 404, "not_found"));
    for (request, status, code) in cases {
        let what = format!("{} {}", request.method(), request.uri());
        let (got, headers, body) = send(&app, request).await;
        assert_eq!(
            got.as_u16(),
            status,
            "{what}: {}",
            String::from_utf8_lossy(&body)
        );
        assert_eq!(headers[header::CONTENT_TYPE], "application/json", "{what}");
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{what}");
        assert_eq!(error_code(&body), code, "{what}");
    }
    let (status, headers, _) = send(&app, post(&fixture, &uri, "image/png", good)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
}

#[tokio::test]
async fn a_request_over_its_pixel_budget_is_refused_before_decoding() {
    let fixture = Fixture::new();
    let mut config = fixture.config();
    config.limits.max_request_pixels = 2_000;
    let app = app(Arc::new(AppState::load(&config).unwrap()));
    let uri = predict_uri(fixture.small_id(), "");
    let (content_type, three) = multipart(&vec![png(30, 30, 1); 3]);
    let (status, _, body) = send(&app, post(&fixture, &uri, &content_type, three)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_code(&body), "too_many_pixels");
    let message = String::from_utf8_lossy(&body);
    assert!(message.contains("0.0 MP together"), "{message}");
    let (content_type, two) = multipart(&vec![png(30, 30, 1); 2]);
    let (status, _, body) = send(&app, post(&fixture, &uri, &content_type, two)).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
}

#[tokio::test]
async fn tokens_guard_everything_but_the_probes_and_the_page() {
    let fixture = Fixture::new();
    let large_id = fixture.large_id();
    let app = app(fixture.state());
    let wrong = format!("Bearer {}x", fixture.token);
    let revoked = format!("Bearer {}", fixture.revoked_token);
    let basic = format!("Basic {}", fixture.token);
    let bad: [Option<&str>; 5] = [
        None,
        Some("Bearer"),
        Some(&wrong),
        Some(&revoked),
        Some(&basic),
    ];
    let routes = documented_routes(&openapi(&app, &fixture).await);
    let mut bodies = Vec::new();
    for (method, path, guarded) in &routes {
        let (method, guarded) = (method.clone(), *guarded);
        let path = concrete(path, large_id);
        for authorization in bad {
            let mut request = Request::builder().method(method.clone()).uri(&path);
            if let Some(value) = authorization {
                request = request.header(header::AUTHORIZATION, value);
            }
            let (status, headers, body) = send(&app, request.body(Body::empty()).unwrap()).await;
            if guarded {
                assert_eq!(
                    status,
                    StatusCode::UNAUTHORIZED,
                    "{method} {path} {authorization:?}"
                );
                assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");
                bodies.push(body);
            } else {
                assert_ne!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
            }
        }
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "401 answers differ"
    );
    assert_eq!(error_code(&bodies[0]), "unauthorized");
    // Another method on a guarded path: the token first, then the 405, so
    // nobody learns which paths exist without one.
    for (_, path, _) in routes.iter().filter(|r| r.2) {
        let path = concrete(path, large_id);
        for method in [Method::OPTIONS, Method::PUT, Method::DELETE] {
            let request = |auth: Option<String>| {
                let mut request = Request::builder().method(method.clone()).uri(&path);
                if let Some(value) = auth {
                    request = request.header(header::AUTHORIZATION, value);
                }
                request.body(Body::empty()).unwrap()
            };
            let (status, _, body) = send(&app, request(None)).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
            assert_eq!(body, bodies[0], "{method} {path}");
            let (status, _, body) = send(&app, request(Some(fixture.bearer()))).await;
            assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert_eq!(error_code(&body), "method_not_allowed");
        }
    }
    let (status, _, _) = send(&app, get("/healthz", None)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = send(&app, get("/readyz", None)).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn the_page_is_self_contained_and_locked_down() {
    let fixture = Fixture::new();
    let app = app(fixture.state());
    for path in ["/", "/assets/tryout.js", "/assets/tryout.css"] {
        let (status, headers, body) = send(&app, get(path, None)).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.contains("default-src 'self'"), "{csp}");
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(
            !text.contains("http://") && !text.contains("https://"),
            "{path} links outside"
        );
        assert!(
            !text.contains("innerHTML"),
            "{path}: server data must go in as text"
        );
    }
}

/// The paths the router serves, read from its `Debug` form: axum lists
/// no routes otherwise. Only the path router's part, not the fallback's.
fn served_paths(app: &axum::Router) -> BTreeSet<String> {
    let debug = format!("{app:?}");
    let routes = debug.split("fallback_router:").next().unwrap();
    let node = routes.split("node: Node { paths: {").nth(1).unwrap_or("");
    // Entries read `RouteId(3): "/v1/models/{id}/predict"`.
    node.split("RouteId(")
        .skip(1)
        .filter_map(|entry| {
            let (_, quoted) = entry.split_once(": \"")?;
            Some(quoted.split_once('"')?.0.to_string())
        })
        .collect()
}

/// Where a request with a token, no body and `method` lands: a handler
/// (any answer), or the router's 404 or 405.
async fn lands(app: &axum::Router, fixture: &Fixture, method: &Method, path: &str) -> bool {
    let request = Request::builder()
        .method(method.clone())
        .uri(path)
        .header(header::AUTHORIZATION, fixture.bearer())
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = send(app, request).await;
    let refused = status == StatusCode::METHOD_NOT_ALLOWED
        || (status == StatusCode::NOT_FOUND && error_code(&body) == "not_found");
    !refused
}

#[tokio::test]
async fn the_document_lists_exactly_what_the_router_serves() {
    let fixture = Fixture::new();
    let large_id = fixture.large_id();
    let mut config = fixture.config();
    // With an issuer, so that every route is mounted (/v1/activate too).
    let _keys = fixture.add_issuer(&mut config);
    let app = app(Arc::new(AppState::load(&config).unwrap()));
    let document = openapi(&app, &fixture).await;
    let documented = documented_routes(&document);
    let served = served_paths(&app);
    assert!(served.len() >= 10, "{served:?}: axum's Debug changed?");
    let described: BTreeSet<String> = documented.iter().map(|r| r.1.clone()).collect();
    assert_eq!(served, described, "served vs documented paths");
    // Per path, a method answers exactly when the document lists it.
    let methods = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
    ];
    for path in &served {
        for method in &methods {
            let listed = documented.iter().any(|r| r.0 == method && r.1 == *path);
            let answered = lands(&app, &fixture, method, &concrete(path, large_id)).await;
            assert_eq!(answered, listed, "{method} {path}: served vs documented");
        }
    }
    // The document's security is what the token check does.
    for (method, path, guarded) in &documented {
        let request = Request::builder()
            .method(method.clone())
            .uri(concrete(path, large_id))
            .body(Body::empty())
            .unwrap();
        let (status, _, _) = send(&app, request).await;
        assert_eq!(
            status == StatusCode::UNAUTHORIZED,
            *guarded,
            "{method} {path}"
        );
    }
    let scheme = &document["components"]["securitySchemes"]["bearer"];
    assert_eq!(
        scheme,
        &serde_json::json!({"type": "http", "scheme": "bearer"})
    );
}

/// Every `$ref` of `value`, anywhere.
fn refs<'a>(value: &'a serde_json::Value, found: &mut Vec<&'a str>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v.as_str()) {
                    ("$ref", Some(target)) => found.push(target),
                    _ => refs(v, found),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| refs(v, found)),
        _ => {}
    }
}

#[tokio::test]
async fn the_document_is_served_whole_and_its_references_resolve() {
    let fixture = Fixture::new();
    let app = app(fixture.state());
    let (status, headers, _) = send(&app, get("/openapi.json", Some(&fixture.bearer()))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    let document = openapi(&app, &fixture).await;
    assert_eq!(document["openapi"], "3.1.0");
    let mut found = Vec::new();
    refs(&document, &mut found);
    assert!(!found.is_empty());
    for target in found {
        let pointer = target
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("{target}"));
        assert!(
            document.pointer(pointer).is_some(),
            "{target} resolves to nothing"
        );
    }
    // The bodies a prediction accepts, the raw image bodies included.
    let predict = &document["paths"]["/v1/models/{id}/predict"]["post"];
    let content = predict["requestBody"]["content"].as_object().unwrap();
    let types: Vec<&str> = content.keys().map(String::as_str).collect();
    for kind in [
        "multipart/form-data",
        "image/*",
        "application/octet-stream",
        "application/json",
    ] {
        assert!(types.contains(&kind), "{kind} in {types:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_are_batched_and_counted() {
    let fixture = Fixture::new();
    let small_id = fixture.small_id();
    let mut config = fixture.config();
    config.batch.sessions = 1;
    config.batch.max_wait = Duration::from_millis(20);
    let state = Arc::new(AppState::load(&config).unwrap());
    let app = app(state);
    let image = png(24, 24, 3);
    let tasks: Vec<_> = (0..24)
        .map(|_| {
            let request = post(
                &fixture,
                &predict_uri(small_id, ""),
                "image/png",
                image.clone(),
            );
            let app = app.clone();
            tokio::spawn(async move { send(&app, request).await.0 })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), StatusCode::OK);
    }
    let (_, headers, body) = send(&app, get("/metrics", Some(&fixture.bearer()))).await;
    assert_eq!(
        headers[header::CONTENT_TYPE],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let (samples, _) = parse_exposition(std::str::from_utf8(&body).unwrap());
    let model = [("model", small_id)];
    let images = sample(&samples, "semiclass_images_total", &model);
    let batches = sample(&samples, "semiclass_batches_total", &model);
    // Warm-up runs are not counted: only the 24 requests' images.
    assert_eq!(images, 24.0);
    assert!(batches < 24.0, "{batches} batches: no batching");
    let route = [("route", "/v1/models/{id}/predict"), ("status", "200")];
    assert_eq!(
        sample(&samples, "semiclass_http_requests_total", &route),
        24.0
    );
    assert_eq!(sample(&samples, "semiclass_requests_in_flight", &[]), 0.0);
    assert!(sample(&samples, "semiclass_inference_seconds_total", &model) > 0.0);
}

/// Every series that scripts and dashboards read (bench/, the serve bench's
/// batching report, tests): a rename must be a decision, not an accident.
const SERIES: [(&str, &str); 9] = [
    ("semiclass_http_requests_total", "counter"),
    ("semiclass_http_request_duration_seconds", "histogram"),
    ("semiclass_requests_in_flight", "gauge"),
    ("semiclass_requests_queued", "gauge"),
    ("semiclass_images_decoding", "gauge"),
    ("semiclass_decodes_stopped_total", "counter"),
    ("semiclass_batches_total", "counter"),
    ("semiclass_images_total", "counter"),
    ("semiclass_inference_seconds_total", "counter"),
];

#[tokio::test]
async fn metrics_parse_as_the_prometheus_text_format() {
    let fixture = Fixture::new();
    let large_id = fixture.large_id();
    let app = app(fixture.state());
    let request = post(
        &fixture,
        &predict_uri(large_id, ""),
        "image/png",
        png(24, 24, 1),
    );
    assert_eq!(send(&app, request).await.0, StatusCode::OK);
    send(&app, get("/v1/models", None)).await;
    let (_, _, body) = send(&app, get("/metrics", Some(&fixture.bearer()))).await;
    let (samples, types) = parse_exposition(std::str::from_utf8(&body).unwrap());
    let expected: BTreeMap<String, String> = SERIES
        .iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect();
    assert_eq!(types, expected);
    // Both models are listed before they run; counters never go negative.
    for id in [large_id, fixture.small_id()] {
        sample(&samples, "semiclass_batches_total", &[("model", id)]);
    }
    assert!(samples.iter().all(|s| s.value >= 0.0), "{samples:#?}");
    assert_eq!(
        sample(
            &samples,
            "semiclass_http_requests_total",
            &[("route", "/v1/models"), ("status", "401")]
        ),
        1.0
    );
    // Each route's histogram: cumulative buckets, +Inf equal to the count.
    let name = "semiclass_http_request_duration_seconds";
    let route = "/v1/models/{id}/predict";
    let buckets: Vec<(f64, f64)> = samples
        .iter()
        .filter(|s| s.name == format!("{name}_bucket") && s.labels["route"] == route)
        .map(|s| {
            (
                s.labels["le"].replace("+Inf", "inf").parse().unwrap(),
                s.value,
            )
        })
        .collect();
    assert_eq!(buckets.len(), 13, "{buckets:?}");
    assert!(
        buckets
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1)
    );
    let count = sample(&samples, &format!("{name}_count"), &[("route", route)]);
    assert_eq!((buckets[12].1, count), (1.0, 1.0));
    assert!(sample(&samples, &format!("{name}_sum"), &[("route", route)]) > 0.0);
}

#[tokio::test]
async fn a_request_past_the_timeout_answers_503() {
    let fixture = Fixture::new();
    let large_id = fixture.large_id();
    let mut config = fixture.config();
    // A decode of a megapixel takes far longer than a millisecond. (A zero
    // timeout is not enough: a request that completes on its first poll
    // beats it, and a small model runs image by image without waiting.)
    config.limits.request_timeout = Duration::from_millis(1);
    let app = app(Arc::new(AppState::load(&config).unwrap()));
    let request = post(
        &fixture,
        &predict_uri(large_id, ""),
        "image/png",
        png(1000, 1000, 0),
    );
    let (status, headers, body) = send(&app, request).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error_code(&body), "timeout");
    assert_eq!(headers[header::RETRY_AFTER], "1");
}

#[tokio::test]
async fn a_changed_package_file_stops_the_start() {
    let fixture = Fixture::new();
    std::fs::write(fixture.small.join("README.md"), "edited").unwrap();
    let err = AppState::load(&fixture.config()).err().unwrap().to_string();
    assert!(
        err.contains("README.md: sha256 differs from manifest.json"),
        "{err}"
    );
    let mut config = fixture.config();
    config.packages = vec![fixture.large.clone(), fixture.large.clone()];
    let err = AppState::load(&config).err().unwrap().to_string();
    assert!(err.contains("serve each package once"), "{err}");
}
