//! Test helpers: checkpoints written without tch, as the trainer writes them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use safetensors::Dtype;
use safetensors::tensor::TensorView;
use semiclass_manifest::PreprocessSpec;
use semiclass_manifest::checkpoint::CheckpointMeta;
use semiclass_manifest::checkpoint_file::{META_KEY, serialize_sorted};
use semiclass_models::backend::ParamKind;
use semiclass_models::{Model, ModelOptions};

/// Deterministic values in `[-0.5, 0.5)` (a 64-bit LCG), so no RNG crate is needed.
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

/// The tensors of `model` with random values (variances positive).
pub fn random_tensors(model: &Model) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let params = model.params().iter().enumerate();
    params
        .map(|(i, p)| {
            let mut v = values(p.shape.iter().product(), i as u64);
            if p.kind == ParamKind::Buffer && p.name.ends_with("running_var") {
                v.iter_mut().for_each(|x| *x += 1.0);
            }
            (p.name.clone(), p.shape.clone(), v)
        })
        .collect()
}

/// Checkpoint metadata for `model` with classes `c0, c1, ...`.
pub fn meta(model: &Model) -> CheckpointMeta {
    let size = model.options.input_size as u32;
    let names = (0..model.options.num_classes)
        .map(|i| format!("c{i}"))
        .collect();
    let preprocess = PreprocessSpec::for_input(size, model.entry.mean, model.entry.std);
    let mut meta = CheckpointMeta::untrained(model.entry.name, names, size, preprocess, "test");
    meta.stem = model.options.stem;
    meta
}

/// Writes `tensors` with `meta` as a checkpoint file.
pub fn write_checkpoint(
    path: &Path,
    tensors: &[(String, Vec<usize>, Vec<f32>)],
    meta: &CheckpointMeta,
) {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, shape, _), b)| {
            (
                name.clone(),
                TensorView::new(Dtype::F32, shape.clone(), b).unwrap(),
            )
        })
        .collect();
    let metadata = BTreeMap::from([(META_KEY.to_string(), serde_json::to_string(meta).unwrap())]);
    let file = serialize_sorted(path, views, metadata).unwrap();
    std::fs::write(path, file).unwrap();
}

/// A random `name` at `size` px with 3 classes, written under `dir`.
pub fn checkpoint(dir: &Path, name: &str, size: usize) -> PathBuf {
    let model = Model::new(name, ModelOptions::new(3, size)).unwrap();
    let path = dir.join(format!("{name}.safetensors"));
    write_checkpoint(&path, &random_tensors(&model), &meta(&model));
    path
}

/// An int8 request for `images`: the first 6 calibrate, the rest (labeled
/// class 1) evaluate.
pub fn int8_request(
    images: &[PathBuf],
    max_drop_points: f64,
    force: bool,
) -> crate::int8::Int8Request {
    use crate::int8::{DEFAULT_METHOD, Int8Images, Int8Request};
    Int8Request {
        images: Int8Images {
            calibration: images[..6].to_vec(),
            calibration_source: "generated".into(),
            evaluation: images[6..].iter().map(|p| (p.clone(), 1)).collect(),
            evaluation_source: "held-out".into(),
        },
        method: DEFAULT_METHOD,
        max_drop_points,
        force,
    }
}

/// The onnxruntime-gpu wheel's `capi` folder (`make ort-gpu`; `make test`
/// fetches it and exports SEMICLASS_ORT_CUDA_DIR).
pub fn cuda_runtime_dir() -> PathBuf {
    std::env::var_os(crate::package::runtime::CUDA_DIR_ENV)
        .map(PathBuf::from)
        .expect("set SEMICLASS_ORT_CUDA_DIR: run `make ort-gpu` (make test does)")
}

/// Whether this machine has an NVIDIA driver: there a CUDA package runs on
/// the GPU, and the tests of its refusal without one cannot be seen.
pub fn has_nvidia_driver() -> bool {
    let listed = std::process::Command::new("/sbin/ldconfig")
        .arg("-p")
        .output();
    listed.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("libcuda.so.1"))
}
