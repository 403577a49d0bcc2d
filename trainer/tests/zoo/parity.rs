//! Parity with timm: max |Δlogit| ≤ 1e-4 × max(1, max|logit|) per case.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use semiclass_models::{Model, ModelOptions};
use semiclass_trainer::nn::Network;
use tch::{Device, Tensor};

#[derive(serde::Deserialize)]
struct Case {
    case: String,
    model: String,
    input_size: usize,
    num_classes: usize,
}

fn fixtures_dir(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(default)
    })
}

fn cases(dir: &Path) -> Vec<Case> {
    let index = dir.join("cases.json");
    let text = std::fs::read_to_string(&index).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; generate the fixtures with `make test` (tests/fixtures/make_models.py)",
            index.display()
        )
    });
    serde_json::from_str(&text).expect("cases.json")
}

/// Runs every fixture case of `family`; returns how many ran.
fn check_family(dir: &Path, family: &str) -> usize {
    let mut ran = 0;
    for case in cases(dir) {
        let model = Model::new(
            &case.model,
            ModelOptions {
                num_classes: case.num_classes,
                input_size: case.input_size,
                drop_rate: 0.0,
                drop_path_rate: 0.0,
            },
        )
        .unwrap_or_else(|e| panic!("{}: {e}", case.case));
        if model.entry.family != family {
            continue;
        }
        check_case(dir, &case, model);
        ran += 1;
    }
    ran
}

fn check_case(dir: &Path, case: &Case, model: Model) {
    let mut net = Network::new(model, Device::Cpu);
    let weights = dir.join(format!("{}.safetensors", case.case));
    let report = net
        .load_safetensors(&weights)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        report.skipped_head.is_empty(),
        "{}: head skipped",
        case.case
    );
    let io: HashMap<String, Tensor> =
        Tensor::read_safetensors(dir.join(format!("{}.io.safetensors", case.case)))
            .unwrap()
            .into_iter()
            .collect();
    let ours = tch::no_grad(|| net.forward(&io["input"], false));
    let timm = &io["logits"];
    assert_eq!(ours.size(), timm.size(), "{}", case.case);
    let max_diff = (&ours - timm).abs().max().double_value(&[]);
    let scale = timm.abs().max().double_value(&[]).max(1.0);
    eprintln!(
        "{}: max |Δlogit| = {max_diff:.3e} (max |logit| {scale:.2})",
        case.case
    );
    assert!(
        max_diff <= 1e-4 * scale,
        "{}: max |Δlogit| {max_diff} > 1e-4 × {scale}",
        case.case
    );
}

fn small() -> PathBuf {
    fixtures_dir("SEMICLASS_MODEL_FIXTURES", "target/model-fixtures")
}

#[test]
fn resnet_matches_timm() {
    assert!(check_family(&small(), "ResNet") >= 3);
}

#[test]
fn hgnetv2_matches_timm() {
    // b0 at 32 and 64 px, b1 at 40 px (LAB, odd maps), b4 at 32 px (no LAB).
    assert_eq!(check_family(&small(), "HGNetV2"), 4);
}

#[test]
fn hgnet_matches_timm() {
    assert_eq!(check_family(&small(), "HGNet"), 1);
}

/// The seed's models at 224 px: slow and memory-hungry (vit_large is 1.2 GB),
/// so run on demand after `make_models.py DIR --seed-models`:
/// `SEMICLASS_SEED_FIXTURES=DIR cargo test -p semiclass-trainer --test zoo -- --ignored`.
#[test]
#[ignore]
fn seed_models_at_full_size_match_timm() {
    let dir = fixtures_dir("SEMICLASS_SEED_FIXTURES", "target/seed-model-fixtures");
    let families = [
        "ResNet",
        "MobileNetV3",
        "LCNet",
        "HGNetV2",
        "HGNet",
        "ViT",
        "Swin",
    ];
    let ran: usize = families.iter().map(|f| check_family(&dir, f)).sum();
    assert_eq!(
        ran,
        cases(&dir).len(),
        "every seed case belongs to a family"
    );
}
