//! A cuda-x86_64 package (the real onnxruntime-gpu wheel, `make ort-gpu`)
//! opened by `infer` on a machine without a usable GPU: refused with what
//! is missing; with `--allow-cpu-fallback`, run on the CPU with a warning,
//! answering what the CPU package of the same model answers.

use std::process::Output;

use semiclass_exporter::testing::{cuda_runtime_dir, has_nvidia_driver};

use crate::common::*;

/// The scores of `infer predict --json`'s one answer, by class id.
fn scores(output: &Output) -> Vec<f32> {
    assert!(output.status.success(), "{}", describe(output));
    let line: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let mut top: Vec<(u64, f64)> = line["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["class_id"].as_u64().unwrap(),
                p["score"].as_f64().unwrap(),
            )
        })
        .collect();
    top.sort_by_key(|(id, _)| *id);
    top.into_iter().map(|(_, s)| s as f32).collect()
}

#[test]
fn a_cuda_package_without_a_gpu_is_refused_and_runs_on_the_cpu_only_when_asked() {
    if has_nvidia_driver() {
        eprintln!("skipped: this machine has an NVIDIA driver (scripts/gpu-check.sh covers it)");
        return;
    }
    let scene = Scene::new(None);
    let cuda = Package::slim_cuda("pkg-cuda", &tiny_model(4), &cuda_runtime_dir());
    let serial = scene.vendor.sell(&cuda, None);
    scene.vendor.activate(&cuda, &scene.laptop, serial, NOW);
    let image = scene.image.to_str().unwrap();
    let predict = |extra: &[&str]| {
        let args = [&["predict", "--json", "--topk", "3"], extra, &[image]].concat();
        scene.laptop.infer(&cuda, &scene.vendor, NOW, &args)
    };

    // The README says the same before anything is run.
    let readme = std::fs::read_to_string(cuda.dir.join("README.md")).unwrap();
    for needle in [
        "needs an NVIDIA GPU with its driver and CUDA 13 and cuDNN 9",
        "`libcuda.so.1`",
        "`bin/infer --allow-cpu-fallback`",
        "`SEMICLASS_ALLOW_CPU_FALLBACK=1`",
    ] {
        assert!(
            readme.contains(needle),
            "README lacks {needle:?}:\n{readme}"
        );
    }

    let refused = predict(&[]);
    assert_eq!(refused.status.code(), Some(2), "{}", describe(&refused));
    for needle in [
        "lib/libonnxruntime_providers_cuda.so: this CUDA package cannot use a GPU here",
        "libcuda.so.1",
        "CUDA 13 and cuDNN 9",
        "--allow-cpu-fallback",
    ] {
        assert_refused(&refused, needle);
    }

    let fallback = predict(&["--allow-cpu-fallback"]);
    let warned = String::from_utf8_lossy(&fallback.stderr);
    assert!(
        warned.contains("warning: running on the CPU as --allow-cpu-fallback allows"),
        "{}",
        describe(&fallback)
    );
    let args = ["predict", "--json", "--topk", "3", image];
    let cpu = scene
        .laptop
        .infer(&scene.package, &scene.vendor, NOW, &args);
    assert_eq!(scores(&fallback), scores(&cpu), "the CPU package's answer");
    assert!((scores(&fallback)[0] - expected_top1(4)).abs() < 1e-6);
}
