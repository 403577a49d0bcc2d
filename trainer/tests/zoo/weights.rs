//! Pretrained weights from a timm-named `.safetensors` file: the head is
//! skipped when the class count differs, and any other mismatch is one
//! error that lists every offending key, leaving the model untouched.

use std::path::PathBuf;

use semiclass_models::{Model, ModelOptions};
use semiclass_trainer::nn::Network;
use tch::{Device, Tensor};

/// resnet18 at 32 px with 7 classes, from the parity fixtures.
fn fixture() -> PathBuf {
    let dir = std::env::var_os("SEMICLASS_MODEL_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/model-fixtures")
        });
    let path = dir.join("resnet18_32.safetensors");
    assert!(
        path.is_file(),
        "{}: run `make test` to generate the fixtures",
        path.display()
    );
    path
}

fn resnet18(classes: usize) -> Network {
    let options = ModelOptions::new(classes, 32);
    Network::new(Model::new("resnet18", options).unwrap(), Device::Cpu)
}

fn tensor(net: &Network, name: &str) -> Tensor {
    net.named_tensors()
        .into_iter()
        .find(|(n, _)| *n == name)
        .unwrap()
        .1
        .copy()
}

/// The fixture's tensors, edited, written to a temp file.
fn edited(edit: impl FnOnce(&mut Vec<(String, Tensor)>)) -> (tempfile::TempDir, PathBuf) {
    let mut tensors = Tensor::read_safetensors(fixture()).unwrap();
    edit(&mut tensors);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edited.safetensors");
    Tensor::write_safetensors(&tensors, &path).unwrap();
    (dir, path)
}

#[test]
fn a_different_class_count_keeps_a_fresh_head_and_loads_the_rest() {
    let mut net = resnet18(5);
    let fresh_fc = tensor(&net, "fc.weight");
    let report = net.load_safetensors(&fixture()).unwrap();
    assert_eq!(report.skipped_head, ["fc.weight", "fc.bias"]);
    assert!(tensor(&net, "fc.weight").equal(&fresh_fc));
    let file: Vec<(String, Tensor)> = Tensor::read_safetensors(fixture()).unwrap();
    let conv1 = &file.iter().find(|(n, _)| n == "conv1.weight").unwrap().1;
    assert!(tensor(&net, "conv1.weight").equal(conv1));
}

#[test]
fn missing_and_unexpected_keys_are_listed_and_nothing_is_loaded() {
    let (_dir, path) = edited(|t| {
        t.retain(|(n, _)| n != "layer1.0.conv1.weight" && n != "bn1.bias");
        t.push((
            "extra.weight".into(),
            Tensor::zeros([2], (tch::Kind::Float, Device::Cpu)),
        ));
    });
    let mut net = resnet18(7);
    let before = tensor(&net, "conv1.weight");
    let err = net.load_safetensors(&path).unwrap_err().to_string();
    assert!(err.contains("does not fit resnet18"), "{err}");
    assert!(
        err.contains("2 missing: bn1.bias, layer1.0.conv1.weight"),
        "{err}"
    );
    assert!(err.contains("1 unexpected: extra.weight"), "{err}");
    assert!(
        tensor(&net, "conv1.weight").equal(&before),
        "a failed load changed weights"
    );
}

#[test]
fn a_wrong_shape_outside_the_head_is_an_error() {
    let (_dir, path) = edited(|t| {
        let slot = t.iter_mut().find(|(n, _)| n == "conv1.weight").unwrap();
        slot.1 = Tensor::zeros([64, 3, 3, 3], (tch::Kind::Float, Device::Cpu));
    });
    let err = resnet18(7).load_safetensors(&path).unwrap_err().to_string();
    assert!(
        err.contains("1 wrong shape: conv1.weight [64, 3, 3, 3] (model [64, 3, 7, 7])"),
        "{err}"
    );
}

#[test]
fn a_file_that_is_not_safetensors_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weights.pth");
    std::fs::write(&path, b"PK\x03\x04 a pickle zip").unwrap();
    let err = resnet18(7).load_safetensors(&path).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("{}: cannot read as safetensors", path.display())),
        "{err}"
    );
}

#[test]
fn saved_weights_load_back_to_the_same_model() {
    let mut trained = resnet18(7);
    trained.load_safetensors(&fixture()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("saved.safetensors");
    trained.save_safetensors(&path).unwrap();
    let mut copy = resnet18(7);
    copy.load_safetensors(&path).unwrap();
    let x = Tensor::randn([2, 3, 32, 32], (tch::Kind::Float, Device::Cpu));
    let (a, b) = tch::no_grad(|| (trained.forward(&x, false), copy.forward(&x, false)));
    assert!(a.equal(&b));
    // Saved under timm's names, buffers included: usable as timm weights.
    let names: Vec<String> = Tensor::read_safetensors(&path)
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(names.contains(&"layer4.1.bn2.running_var".to_string()));
}
