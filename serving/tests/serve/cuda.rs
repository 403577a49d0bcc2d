//! A cuda-x86_64 package, built by the exporter's writer from the real
//! onnxruntime-gpu wheel (`make ort-gpu`), served by the binary on a
//! machine without a usable GPU: refused with what is missing; with
//! `--allow-cpu-fallback`, served on the CPU (logged) with the answers of
//! the CPU package of the same model.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Output, Stdio};

use axum::http::Method;
use semiclass_manifest::checkpoint::Role;
use semiclass_manifest::package::Target;
use semiclass_serve::predict::PredictResponse;

use semiclass_exporter::testing::{cuda_runtime_dir, has_nvidia_driver};

use crate::common::*;
use crate::socket::{Running, Server, binary, listening_address};

/// `semiclass-serve serve` on `packages` with the packages' own runtime
/// (the first package's: the CUDA build), as a user runs it.
fn serve(fixture: &Fixture, packages: &[&Path], extra: &[&str]) -> std::process::Command {
    let mut command = binary();
    command
        .env_remove("ORT_DYLIB_PATH")
        .args(["--tokens", fixture.tokens.to_str().unwrap(), "serve"])
        .args(["--listen", "127.0.0.1:0", "--sessions", "1"])
        .args(extra);
    for package in packages {
        command.arg("--package").arg(package);
    }
    command
}

fn assert_refused_with_what_is_missing(output: &Output) {
    let all = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{all}");
    // One line says it all (ONNX Runtime may log lines of its own).
    let stderr = all
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_default();
    for needle in [
        "lib/libonnxruntime_providers_cuda.so: this CUDA package cannot use a GPU here",
        "libcuda.so.1",
        "libcudart.so.13",
        "CUDA 13 and cuDNN 9",
        "pip install",
        "--allow-cpu-fallback",
    ] {
        assert!(stderr.contains(needle), "no {needle:?} in: {all}");
    }
}

fn scores(body: &[u8]) -> Vec<f32> {
    let answer: PredictResponse = serde_json::from_slice(body).unwrap();
    let mut top = answer.predictions[0].top.clone();
    top.sort_by_key(|c| c.class_id);
    top.iter().map(|c| c.score).collect()
}

#[test]
fn a_cuda_package_without_a_gpu_is_refused_and_runs_on_the_cpu_only_when_asked() {
    if has_nvidia_driver() {
        eprintln!("skipped: this machine has an NVIDIA driver (scripts/gpu-check.sh covers it)");
        return;
    }
    let fixture = Fixture::new();
    let dir = fixture.dir.path();
    let model = tiny_model(CLASSES.len(), 16, 2);
    let runtime = cuda_runtime_dir();
    let target = (Target::CudaX86_64, runtime.as_path());
    let (cuda, manifest) = write_target_package(dir, &model, (Role::Small, 16), target);
    assert_eq!(manifest.runtime.cuda.unwrap().cuda.as_deref(), Some("13"));

    let refused = serve(&fixture, &[&cuda], &[]).output().unwrap();
    assert_refused_with_what_is_missing(&refused);

    let packages = [cuda.as_path(), fixture.small.as_path()];
    let mut child = Running(
        serve(&fixture, &packages, &["--allow-cpu-fallback"])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stderr = BufReader::new(child.0.stderr.take().unwrap());
    let mut log = String::new();
    while !log.contains("running on the CPU as --allow-cpu-fallback allows") {
        assert!(stderr.read_line(&mut log).unwrap() > 0, "{log}");
    }
    let server = Server::at(listening_address(&mut stderr));
    let image = png(40, 30, 5);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let bearer = fixture.bearer();
    let headers = [
        ("authorization", bearer.as_str()),
        ("content-type", "image/png"),
    ];
    let mut answers = Vec::new();
    for id in [&manifest.package_id, fixture.small_id()] {
        let path = format!("/v1/models/{id}/predict?topk={}", CLASSES.len());
        let (status, body) =
            runtime.block_on(server.send(Method::POST, &path, &headers, image.clone()));
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        answers.push(scores(&body));
    }
    assert_eq!(answers[0], answers[1], "the CUDA package on the CPU");
    let expected = fixture.expected_scores(fixture.small_id(), &image);
    for (got, want) in answers[0].iter().zip(&expected) {
        assert!(
            (got - want).abs() < 1e-5,
            "{:?} vs {expected:?}",
            answers[0]
        );
    }
}
