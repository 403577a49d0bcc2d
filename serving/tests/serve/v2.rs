//! The Open Inference Protocol (KServe v2): through the router, and over a
//! socket with the ecosystem's own Python client.

use std::process::Command;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use semiclass_serve::app;
use semiclass_serve::v2::wire::length_prefixed;
use serde_json::{Value, json};

use crate::common::*;
use crate::socket::Server;

fn infer_uri(id: &str) -> String {
    format!("/v2/models/{id}/infer")
}

/// A JSON request to `uri` with the fixture's token.
async fn infer_json(
    app: &axum::Router,
    fixture: &Fixture,
    uri: &str,
    request: &Value,
) -> (StatusCode, axum::http::HeaderMap, axum::body::Bytes) {
    let body = request.to_string().into_bytes();
    send(app, post(fixture, uri, "application/json", body)).await
}

fn json_of(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)))
}

fn assert_close(found: &[f32], expected: &[f32]) {
    assert_eq!(found.len(), expected.len(), "{found:?} vs {expected:?}");
    for (a, b) in found.iter().zip(expected) {
        assert!((a - b).abs() < 1e-4, "{found:?} vs {expected:?}");
    }
}

fn floats(value: &Value) -> Vec<f32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect()
}

#[tokio::test]
async fn a_json_request_gets_the_probabilities_of_the_shared_preprocessing() {
    let fixture = Fixture::new();
    let id = fixture.large_id().to_string();
    let app = app(fixture.state());
    let (a, b) = (png(40, 30, 1), png(24, 24, 9));
    let request = json!({
        "id": "r1",
        "inputs": [{"name": "image", "shape": [2], "datatype": "BYTES",
                    "data": [BASE64.encode(&a), BASE64.encode(&b)]}],
        "outputs": [{"name": "probabilities"}],
    });
    let (status, headers, body) = infer_json(&app, &fixture, &infer_uri(&id), &request).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    let answer = json_of(&body);
    assert_eq!(answer["model_name"], json!(id));
    assert_eq!(answer["id"], "r1");
    let output = &answer["outputs"][0];
    assert_eq!(output["datatype"], "FP32");
    assert_eq!(output["shape"], json!([2, CLASSES.len()]));
    let data = floats(&output["data"]);
    let classes = CLASSES.len();
    assert_close(&data[..classes], &fixture.expected_scores(&id, &a));
    assert_close(&data[classes..], &fixture.expected_scores(&id, &b));
}

#[tokio::test]
async fn binary_data_in_and_out_and_the_classification_extension() {
    let fixture = Fixture::new();
    let id = fixture.small_id().to_string();
    let app = app(fixture.state());
    let image = png(20, 20, 4);
    let files = length_prefixed(&[&image]);
    let header_json = json!({
        "inputs": [{"name": "image", "shape": [1], "datatype": "BYTES",
                    "parameters": {"binary_data_size": files.len()}}],
        "outputs": [{"name": "probabilities", "parameters": {"binary_data": true}},
                    {"name": "probabilities", "parameters": {"classification": 2}}],
    })
    .to_string();
    let mut body = header_json.clone().into_bytes();
    body.extend(&files);
    let request = Request::post(infer_uri(&id))
        .header(header::AUTHORIZATION, fixture.bearer())
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header("Inference-Header-Content-Length", header_json.len())
        .body(Body::from(body))
        .unwrap();
    let (status, headers, body) = send(&app, request).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let json_length: usize = headers["inference-header-content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let answer = json_of(&body[..json_length]);
    let probabilities = &answer["outputs"][0];
    let size = probabilities["parameters"]["binary_data_size"]
        .as_u64()
        .unwrap() as usize;
    assert_eq!(size, 4 * CLASSES.len());
    let found: Vec<f32> = body[json_length..json_length + size]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let expected = fixture.expected_scores(&id, &image);
    assert_close(&found, &expected);
    // The two best as "score:index:label", as JSON text.
    let best = &answer["outputs"][1];
    assert_eq!(best["datatype"], "BYTES");
    assert_eq!(best["shape"], json!([1, 2]));
    let mut order: Vec<usize> = (0..expected.len()).collect();
    order.sort_by(|&a, &b| expected[b].total_cmp(&expected[a]));
    for (rank, entry) in best["data"].as_array().unwrap().iter().enumerate() {
        let parts: Vec<&str> = entry.as_str().unwrap().split(':').collect();
        assert_eq!(parts[1], order[rank].to_string(), "{entry}");
        assert_eq!(parts[2], CLASSES[order[rank]], "{entry}");
        let score: f32 = parts[0].parse().unwrap();
        assert!((score - expected[order[rank]]).abs() < 1e-5, "{entry}");
    }
    assert_eq!(
        body.len(),
        json_length + size,
        "the classification went as JSON"
    );
}

#[tokio::test]
async fn a_preprocessed_tensor_runs_as_is() {
    let fixture = Fixture::new();
    let id = fixture.large_id().to_string();
    let state = fixture.state();
    let spec = &state.models[&id].manifest.model;
    let (input, side) = (spec.input_name.clone(), spec.input_size as usize);
    let app = app(state.clone());
    let tensor: Vec<f32> = (0..3 * side * side)
        .map(|i| (i % 7) as f32 / 7.0 - 0.5)
        .collect();
    let request = json!({
        "inputs": [{"name": input, "shape": [1, 3, side, side], "datatype": "FP32", "data": tensor}],
    });
    let (status, _, body) = infer_json(&app, &fixture, &infer_uri(&id), &request).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let logits = fixture.weights[&id].0.logits(&tensor);
    let expected = semiclass_serve::predict::softmax(&logits);
    assert_close(&floats(&json_of(&body)["outputs"][0]["data"]), &expected);
}

#[tokio::test]
async fn wrong_requests_get_the_protocols_error_naming_the_problem() {
    let fixture = Fixture::new();
    let id = fixture.large_id().to_string();
    let app = app(fixture.state());
    let image = BASE64.encode(png(8, 8, 1));
    let cases = [
        (
            infer_uri("no-such-model"),
            json!({"inputs": []}),
            StatusCode::NOT_FOUND,
            "no model \"no-such-model\"",
        ),
        (
            format!("/v2/models/{id}/versions/2/infer"),
            json!({"inputs": []}),
            StatusCode::NOT_FOUND,
            "only version 1",
        ),
        (
            infer_uri(&id),
            json!({"inputs": [{"name": "pixels", "shape": [1], "datatype": "BYTES", "data": [image]}]}),
            StatusCode::BAD_REQUEST,
            "input \"pixels\" (BYTES): this model takes \"image\"",
        ),
        (
            infer_uri(&id),
            json!({"inputs": []}),
            StatusCode::BAD_REQUEST,
            "0 inputs: send exactly one",
        ),
        (
            infer_uri(&id),
            json!({"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": ["not base64!"]}]}),
            StatusCode::BAD_REQUEST,
            "element 0 is not base64",
        ),
        (
            infer_uri(&id),
            json!({"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [image]}],
                   "outputs": [{"name": "logits"}]}),
            StatusCode::BAD_REQUEST,
            "no output \"logits\"",
        ),
    ];
    for (uri, request, status, message) in cases {
        let (found, _, body) = infer_json(&app, &fixture, &uri, &request).await;
        assert_eq!(
            found,
            status,
            "{uri} {request}: {}",
            String::from_utf8_lossy(&body)
        );
        let error = json_of(&body)["error"].as_str().unwrap().to_string();
        assert!(error.contains(message), "{uri} {request}: {error}");
    }
    // Not an image at all: the image's own error, as for /v1.
    let request = json!({"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES",
                                     "data": [BASE64.encode(b"not an image")]}]});
    let (status, _, body) = infer_json(&app, &fixture, &infer_uri(&id), &request).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        json_of(&body)["error"]
            .as_str()
            .unwrap()
            .starts_with("image 0:")
    );
}

/// The dev venv's interpreter (`make test` installs tritonclient there).
fn venv_python() -> std::path::PathBuf {
    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    assert!(
        python.exists(),
        "{}: no dev venv; `make test` makes it from requirements-dev.txt",
        python.display()
    );
    python
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tritonclient_calls_the_server_unchanged() {
    let fixture = Fixture::new();
    let id = fixture.large_id().to_string();
    let state = fixture.state();
    let side = state.models[&id].manifest.model.input_size;
    let server = Server::start(state).await;
    let image = png(30, 20, 3);
    let image_file = fixture.dir.path().join("photo.png");
    std::fs::write(&image_file, &image).unwrap();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/v2/tritonclient_check.py");
    let (python, addr, token) = (
        venv_python(),
        server.addr.to_string(),
        fixture.token.clone(),
    );
    let side_text = side.to_string();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .args([addr.as_str(), token.as_str(), id.as_str()])
            .arg(&image_file)
            .arg(side_text)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let report = json_of(&output.stdout);
    assert_eq!(report["live"], true);
    assert_eq!(report["ready"], true);
    assert_eq!(report["model_ready"], true);
    let id = fixture.large_id();
    assert_eq!(report["metadata"]["name"], json!(id));
    let expected = fixture.expected_scores(id, &image);
    for key in ["binary", "json"] {
        for row in report[key].as_array().unwrap() {
            assert_close(&floats(row), &expected);
        }
    }
    let best = report["classification"][1][0].as_str().unwrap();
    let top = (0..expected.len())
        .max_by(|&a, &b| expected[a].total_cmp(&expected[b]))
        .unwrap();
    assert!(
        best.ends_with(&format!(":{top}:{}", CLASSES[top])),
        "{best}"
    );
    let zeros = vec![0.0; 3 * (side as usize).pow(2)];
    let logits = fixture.weights[id].0.logits(&zeros);
    assert_close(
        &floats(&report["zeros"][0]),
        &semiclass_serve::predict::softmax(&logits),
    );
    let wrong = report["wrong"].as_str().unwrap();
    assert!(wrong.contains("input \"pixels\""), "{wrong}");
}
