//! An int8 package (the exporter's own int8 export of a checkpoint) is
//! served by the same code as an fp32 one, and answers like it.

use std::path::{Path, PathBuf};

use axum::http::StatusCode;
use semiclass_exporter::int8::export_int8;
use semiclass_exporter::package::{PackageRequest, write_package};
use semiclass_exporter::{OnnxModel, export_checkpoint, testing};
use semiclass_manifest::package::Target;
use semiclass_manifest::quantization::Precision;
use semiclass_serve::predict::PredictResponse;
use semiclass_serve::{AppState, app};

use crate::common::*;

/// `onnx` packaged without the SDK and unpacked under `dir/name`.
fn package(dir: &Path, name: &str, onnx: &OnnxModel) -> (PathBuf, String) {
    let runtime = dir.join("placeholder-onnxruntime");
    std::fs::create_dir_all(&runtime).unwrap();
    std::fs::write(runtime.join("libonnxruntime.so.1.32.0"), b"placeholder").unwrap();
    let built = write_package(
        onnx,
        &PackageRequest {
            target: Target::CpuX86_64,
            out_dir: &dir.join(name),
            runtime_dir: Some(&runtime),
            sdk: None,
            vendor_keys: None,
            replace: false,
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let unpacked = dir.join(name).join("unpacked");
    semiclass_package::unpack(&built.path, &unpacked).unwrap();
    (unpacked, built.manifest.package_id)
}

fn int8_model(dir: &Path, checkpoint: &Path) -> OnnxModel {
    let images: Vec<PathBuf> = (0..10)
        .map(|i| {
            let path = dir.join(format!("img{i}.png"));
            std::fs::write(&path, png(40 + i * 3, 30, i as u8)).unwrap();
            path
        })
        .collect();
    // Random weights: there is no accuracy to keep (forced).
    let request = testing::int8_request(&images, 1.0, true);
    export_int8(checkpoint, &onnxruntime(), &request).unwrap()
}

fn scores(body: &[u8]) -> Vec<f32> {
    let answer: PredictResponse = serde_json::from_slice(body).unwrap();
    let mut top = answer.predictions[0].top.clone();
    top.sort_by_key(|c| c.class_id);
    top.iter().map(|c| c.score).collect()
}

#[tokio::test]
async fn an_int8_package_is_served_like_an_fp32_one() {
    let fixture = Fixture::new();
    let dir = fixture.dir.path();
    let checkpoint = testing::checkpoint(dir, "lcnet_050", 32);
    let (int8, int8_id) = package(dir, "int8", &int8_model(dir, &checkpoint));
    let (fp32, fp32_id) = package(dir, "fp32", &export_checkpoint(&checkpoint).unwrap());
    let manifest = semiclass_package::Package::open(&int8).unwrap().manifest;
    assert_eq!(manifest.model.precision, Precision::Int8);

    let mut config = fixture.config();
    config.packages = vec![int8, fp32];
    let app = app(std::sync::Arc::new(AppState::load(&config).unwrap()));
    let image = png(50, 40, 7);
    let mut answers = Vec::new();
    for id in [&int8_id, &fp32_id] {
        let uri = format!("/v1/models/{id}/predict?topk=3");
        let (status, _, body) = send(&app, post(&fixture, &uri, "image/png", image.clone())).await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        answers.push(scores(&body));
    }
    let (int8, fp32) = (&answers[0], &answers[1]);
    assert!((int8.iter().sum::<f32>() - 1.0).abs() < 1e-4, "{int8:?}");
    let worst = int8
        .iter()
        .zip(fp32)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(worst < 0.1, "int8 {int8:?} vs fp32 {fp32:?}");
}
