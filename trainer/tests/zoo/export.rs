//! The exported ONNX model against tch on the same checkpoint: ONNX Runtime
//! on the exported file and our tch forward pass agree to
//! max |Δlogit| ≤ 1e-4 × max(1, max|logit|) with the same top-1 on 500 real
//! Fashion-MNIST test images, preprocessed by the one shared path.
//!
//! Weights are random, and so are BatchNorm's affine parameters; its running
//! statistics come from training-mode passes over real images, so folding
//! BatchNorm into the convolutions is tested with non-trivial statistics.
//! Every file also passes `onnx.checker.check_model(full_check=True)`.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::Path;
use std::sync::OnceLock;

use ort::session::Session;
use ort::value::Tensor as OrtTensor;
use prost::Message;
use semiclass_dataset::fashion_mnist::{CLASS_NAMES, DEBIAN_DIR, read_split};
use semiclass_exporter::onnx::ModelProto;
use semiclass_exporter::{OnnxModel, export_checkpoint};
use semiclass_manifest::PreprocessSpec;
use semiclass_manifest::checkpoint::CheckpointMeta;
use semiclass_models::backend::{Init, ParamKind};
use semiclass_models::registry::SEED_NAMES;
use semiclass_models::{Model, ModelOptions, Stem};
use semiclass_preprocess::{DecodeLimits, preprocess_bytes};
use semiclass_trainer::checkpoint::save_checkpoint;
use semiclass_trainer::nn::{Layout, Network};
use tch::{Device, Tensor};

/// Real images compared per model.
const IMAGES: usize = 500;
/// Images per ONNX Runtime / tch call (the exported batch dimension is dynamic).
const BATCH: usize = 50;

/// The first `n` Fashion-MNIST test images, as PNG files in memory.
fn fashion_mnist_pngs(n: usize) -> &'static [Vec<u8>] {
    static PNGS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    let pngs = PNGS.get_or_init(|| {
        let split = read_split(Path::new(DEBIAN_DIR), "t10k")
            .unwrap_or_else(|e| panic!("{e}; `apt-get install dataset-fashion-mnist` provides it"));
        split.images[..IMAGES.max(n)]
            .iter()
            .map(|pixels| {
                let image = image::GrayImage::from_raw(28, 28, pixels.to_vec()).expect("28x28");
                let mut png = Cursor::new(Vec::new());
                image
                    .write_to(&mut png, image::ImageFormat::Png)
                    .expect("encodes");
                png.into_inner()
            })
            .collect()
    });
    &pngs[..n]
}

/// `n` images through the shared preprocessing, as one NCHW batch.
fn inputs(spec: &PreprocessSpec, n: usize) -> Tensor {
    let size = spec.crop as i64;
    let data: Vec<f32> = fashion_mnist_pngs(n)
        .iter()
        .flat_map(|png| {
            preprocess_bytes(png, DecodeLimits::default(), spec)
                .expect("decodes")
                .data
        })
        .collect();
    Tensor::from_slice(&data).reshape([n as i64, 3, size, size])
}

/// Random affine parameters (what initialises to ones or zeros), then
/// BatchNorm statistics from training-mode passes over real images
/// .
fn randomize(net: &Network, x: &Tensor) {
    tch::no_grad(|| {
        let tensors = net.named_tensors();
        for (p, (_, t)) in net.model.params().iter().zip(tensors) {
            let base = match (p.kind, p.init) {
                (ParamKind::Trainable, Init::Ones) => 1.0,
                // A norm scale that starts at zero (ResNet's last norm of
                // each block) is a scale all the same.
                (ParamKind::Trainable, Init::Zeros)
                    if p.shape.len() == 1 && p.name.ends_with(".weight") =>
                {
                    1.0
                }
                (ParamKind::Trainable, Init::Zeros) => 0.0,
                _ => continue,
            };
            t.shallow_clone().copy_(&(t.randn_like() * 0.1 + base));
        }
    });
    calibrate_batch_norm(net, x);
    center_head(net, x);
}

/// BatchNorm running statistics measured on real images: zeroed, updated
/// by training-mode passes (PyTorch's momentum 0.1), then divided by the
/// weight the passes gave them (`1 - 0.9^passes`), so they are the batch
/// statistics' moving average with nothing left of the initial ones (which
/// would otherwise dominate layers of small variance and, over depth,
/// make the logits independent of the image).
fn calibrate_batch_norm(net: &Network, x: &Tensor) {
    const PASSES: i32 = 10;
    let stats: Vec<&Tensor> = net
        .named_tensors()
        .into_iter()
        .filter(|(n, _)| n.ends_with("running_mean") || n.ends_with("running_var"))
        .map(|(_, t)| t)
        .collect();
    if stats.is_empty() {
        return;
    }
    tch::no_grad(|| {
        stats.iter().for_each(|t| {
            let _ = t.shallow_clone().zero_();
        });
        let n = x.size()[0];
        for i in 0..PASSES as i64 {
            let start = (i * 25) % (n - 25);
            let _ = net.forward(&x.narrow(0, start, 25), true);
        }
        let weight = 1.0 - 0.9f64.powi(PASSES);
        stats.iter().for_each(|t| {
            let _ = t.shallow_clone().g_div_scalar_(weight);
        });
    });
}

/// Subtracts each class's mean logit over `x` from the head's bias. A random
/// network's logits are mostly a per-class constant (similar images give
/// similar pooled features), so its top-1 would be one class for every
/// image; centred, the top-1 follows the image and agreeing on it means
/// something.
fn center_head(net: &Network, x: &Tensor) {
    let bias_name = format!("{}.bias", net.model.entry.head);
    tch::no_grad(|| {
        let n = x.size()[0].min(100);
        let mean = net
            .forward(&x.narrow(0, 0, n), false)
            .mean_dim(0, false, None);
        let tensors = net.named_tensors();
        let (_, bias) = tensors
            .iter()
            .find(|(n, _)| *n == bias_name)
            .expect("the head has a bias");
        let _ = bias.shallow_clone().f_sub_(&mean).expect("same shape");
    });
}

fn meta(model: &Model, preprocess: PreprocessSpec) -> CheckpointMeta {
    let names = CLASS_NAMES.iter().map(|c| c.to_string()).collect();
    let size = model.options.input_size as u32;
    let mut meta = CheckpointMeta::untrained(model.entry.name, names, size, preprocess, "test");
    meta.stem = model.options.stem;
    meta
}

fn ort_env() -> &'static ort::environment::Environment {
    static ENV: OnceLock<ort::environment::Environment> = OnceLock::new();
    ENV.get_or_init(|| {
        let lib = std::env::var("ORT_DYLIB_PATH").expect(
            "ORT_DYLIB_PATH names the onnxruntime wheel's libonnxruntime.so.* (make test sets it)",
        );
        ort::init_from(&lib)
            .expect("loads ONNX Runtime")
            .build()
            .expect("ONNX Runtime environment")
    })
}

/// Logits of the ONNX model for `x`, in batches of [`BATCH`].
fn ort_logits(onnx: &[u8], x: &Tensor) -> Vec<f32> {
    let builder = Session::builder(ort_env()).expect("session builder");
    let mut builder = builder.with_intra_threads(2).expect("2 threads");
    let mut session = builder
        .commit_from_memory(onnx)
        .expect("ONNX Runtime loads the exported model");
    let mut out = Vec::new();
    for batch in x.split(BATCH as i64, 0) {
        let shape: Vec<i64> = batch.size();
        let data = Vec::<f32>::try_from(batch.flatten(0, -1)).expect("f32");
        let input = OrtTensor::from_array((shape, data)).expect("tensor");
        let outputs = session.run(ort::inputs!["input" => input]).expect("runs");
        let (_, logits) = outputs["logits"]
            .try_extract_tensor::<f32>()
            .expect("f32 logits");
        out.extend_from_slice(logits);
    }
    out
}

fn tch_logits(net: &Network, x: &Tensor) -> Vec<f32> {
    let logits = tch::no_grad(|| {
        Tensor::cat(
            &x.split(BATCH as i64, 0)
                .iter()
                .map(|b| net.forward(b, false))
                .collect::<Vec<_>>(),
            0,
        )
    });
    Vec::<f32>::try_from(logits.flatten(0, -1)).expect("f32")
}

/// `onnx.checker.check_model(full_check=True)` in the dev venv's Python.
fn onnx_checker(path: &Path) {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python".into());
    let script = "import onnx, sys; onnx.checker.check_model(sys.argv[1], full_check=True)";
    let out = std::process::Command::new(&python)
        .args(["-c", script])
        .arg(path)
        .output()
        .unwrap_or_else(|e| {
            panic!("{python}: {e}; run through `make test` (the dev venv's python with onnx)")
        });
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "onnx.checker refused {}: {stderr}",
        path.display()
    );
}

/// The graph is what the issue asks for: opset 17, IR 8, no BatchNorm left,
/// the class names and preprocessing in metadata_props.
fn check_proto(onnx: &OnnxModel, batch_norms: usize) {
    let proto = ModelProto::decode(onnx.bytes.as_slice()).expect("decodes");
    assert_eq!(
        (proto.ir_version, proto.opset_import[0].version),
        (Some(8), Some(17))
    );
    let graph = proto.graph.as_ref().unwrap();
    assert!(
        graph
            .node
            .iter()
            .all(|n| n.op_type() != "BatchNormalization")
    );
    assert_eq!((onnx.fold.folded, onnx.fold.affine.len()), (batch_norms, 0));
    let props: BTreeMap<&str, &str> = proto
        .metadata_props
        .iter()
        .map(|p| (p.key(), p.value()))
        .collect();
    let names: Vec<String> = serde_json::from_str(props["class_names"]).unwrap();
    assert_eq!(names, CLASS_NAMES);
    let spec: PreprocessSpec = serde_json::from_str(props["preprocess"]).unwrap();
    assert_eq!(spec, onnx.meta.preprocess);
}

/// Exports a random `name` at `size` px and compares ONNX Runtime with tch
/// on `images` real images.
pub fn check_export(name: &str, size: usize, images: usize) {
    check_export_with_stem(name, size, Stem::ImageNet, images);
}

fn check_export_with_stem(name: &str, size: usize, stem: Stem, images: usize) {
    tch::manual_seed(0);
    let options = ModelOptions::new(CLASS_NAMES.len(), size).with_stem(stem);
    let model = Model::new(name, options).unwrap();
    let (mean, std) = (model.entry.mean, model.entry.std);
    let spec = PreprocessSpec::for_input(size as u32, mean, std);
    let x = inputs(&spec, images);
    let batch_norms = model
        .params()
        .iter()
        .filter(|p| p.name.ends_with("running_mean"))
        .count();
    let net = Network::with_layout(model, Device::Cpu, Layout::Contiguous);
    randomize(&net, &x);
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join(format!("{name}.safetensors"));
    save_checkpoint(&ckpt, &net.named_tensors(), &meta(&net.model, spec)).unwrap();
    let onnx = export_checkpoint(&ckpt).unwrap_or_else(|e| panic!("{e}"));
    check_proto(&onnx, batch_norms);
    let file = dir.path().join("model.onnx");
    std::fs::write(&file, &onnx.bytes).unwrap();
    onnx_checker(&file);
    compare(name, &ort_logits(&onnx.bytes, &x), &tch_logits(&net, &x));
}

fn top1(logits: &[f32]) -> Vec<usize> {
    let classes = CLASS_NAMES.len();
    logits
        .chunks(classes)
        .map(|row| {
            (0..classes)
                .max_by(|&a, &b| row[a].total_cmp(&row[b]))
                .unwrap()
        })
        .collect()
}

fn compare(name: &str, ort: &[f32], tch: &[f32]) {
    assert_eq!(ort.len(), tch.len(), "{name}: output sizes");
    let max_diff = ort
        .iter()
        .zip(tch)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    let scale = tch.iter().map(|v| v.abs()).fold(1f32, f32::max);
    let (top_ort, top_tch) = (top1(ort), top1(tch));
    let agree = top_ort.iter().zip(&top_tch).filter(|(a, b)| a == b).count();
    let mut distinct = top_tch.clone();
    distinct.sort_unstable();
    distinct.dedup();
    eprintln!(
        "{name}: {} images, max |Δlogit| = {max_diff:.3e} (max |logit| {scale:.2}), top-1 agreement {agree}/{}, {} distinct classes predicted",
        top_tch.len(),
        top_tch.len(),
        distinct.len()
    );
    assert!(
        max_diff <= 1e-4 * scale,
        "{name}: max |Δlogit| {max_diff} > 1e-4 × {scale}"
    );
    assert_eq!(agree, top_tch.len(), "{name}: top-1 differs");
    // Logits that do not depend on the image would make the comparison moot.
    assert!(
        distinct.len() >= 3,
        "{name}: the random model predicts {distinct:?} only"
    );
}

#[test]
fn resnet_export_matches_tch() {
    check_export("resnet18", 32, IMAGES);
}

#[test]
fn mobilenetv3_export_matches_tch() {
    check_export("mobilenetv3_small_050", 32, IMAGES);
}

#[test]
fn lcnet_export_matches_tch() {
    check_export("lcnet_050", 32, IMAGES);
}

#[test]
fn hgnetv2_export_matches_tch() {
    // b0 uses the learnable affine blocks and the padded two-branch stem.
    check_export("hgnetv2_b0", 32, IMAGES);
}

#[test]
fn hgnet_export_matches_tch() {
    check_export("hgnet_tiny", 32, IMAGES);
}

#[test]
fn compact_stems_export_matches_tch() {
    // One model per way a stem is made compact: no max pool (ResNet, HGNet
    // v1), a stride-1 first conv (LCNet), a stride-1 `stem3` (HGNetV2).
    for name in ["resnet18", "lcnet_050", "hgnet_tiny", "hgnetv2_b0"] {
        check_export_with_stem(name, 32, Stem::Compact, IMAGES);
    }
}

#[test]
fn vit_export_matches_tch() {
    check_export("vit_tiny_patch16_224", 32, IMAGES);
}

#[test]
fn swin_export_matches_tch() {
    // Swin takes only multiples of 224 px (models/src/families/swin.rs), where
    // swin_tiny costs 4.5 GFLOPs an image: 500 images on both sides would take
    // minutes, so the suite compares 50 and the ignored test below 500.
    check_export("swin_tiny_patch4_window7_224", 224, 50);
}

/// Swin and the seed's models (DESIGN.md section 5) at their real size on
/// 500 images each: slow and memory-hungry (vit_large is 1.2 GB, held
/// several times over), so run on demand:
/// `cargo test --release -p semiclass-trainer --test zoo export -- --ignored --nocapture`.
/// Every model runs; the failures are listed at the end.
///
/// Known (2026-11-28): the random deep HGNetV2s at 224 px exceed the strict
/// bound, b6 by far (3.9e-3 at max |logit| 3.05, 49/50 top-1), b4 barely
/// (1.2e-4 at 1.00). That is float32 conditioning, not the export: timm's
/// own random b6 (tests/fixtures' randomisation and BatchNorm calibration)
/// differs from itself run in float64 by 1.6e-3 at max |logit| 1.03 (b4:
/// 1.3e-5 at 0.57).
#[test]
#[ignore]
fn seed_models_and_swin_on_500_images_export_matches_tch() {
    let mut runs = vec![("swin_tiny_patch4_window7_224", IMAGES)];
    runs.extend(SEED_NAMES.iter().map(|(_, timm)| (*timm, IMAGES)));
    let failed: Vec<&str> = runs
        .into_iter()
        .filter(|&(name, images)| {
            std::panic::catch_unwind(|| check_export(name, 224, images)).is_err()
        })
        .map(|(name, _)| name)
        .collect();
    assert!(failed.is_empty(), "beyond the bound: {failed:?}");
}
