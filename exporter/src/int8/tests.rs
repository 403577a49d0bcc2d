//! int8 export of small random models on generated images, through the
//! ONNX Runtime of the dev environment (`ORT_DYLIB_PATH`, as `make test`
//! sets it).

use std::path::{Path, PathBuf};

use prost::Message;

use super::session::{Runner, load_batch};
use super::*;
use crate::onnx::{ModelProto, tensor_proto::DataType};
use crate::testing;

pub fn library() -> PathBuf {
    std::env::var_os("ORT_DYLIB_PATH")
        .map(PathBuf::from)
        .expect(
            "ORT_DYLIB_PATH names the onnxruntime wheel's libonnxruntime.so.* (make test sets it)",
        )
}

/// `n` distinct 40x40 PNG images: gradients and stripes of varying
/// direction and colour, so activations vary from image to image.
pub fn images(dir: &Path, n: usize) -> Vec<PathBuf> {
    (0..n)
        .map(|i| {
            let image = image::RgbImage::from_fn(40, 40, |x, y| {
                let k = i as u32 + 1;
                let stripe = if (x * k / 7 + y).is_multiple_of(2) {
                    200
                } else {
                    30
                };
                image::Rgb([(x * 6 * k % 256) as u8, stripe, (y * 5 + 40 * k) as u8])
            });
            let path = dir.join(format!("img{i}.png"));
            image.save(&path).unwrap();
            path
        })
        .collect()
}

/// The values of output `name` of `model` over `images`.
fn values(
    model: &[u8],
    images: &[PathBuf],
    spec: &semiclass_manifest::PreprocessSpec,
    name: &str,
) -> Vec<f32> {
    let mut runner = Runner::new(&library(), model, 1).unwrap();
    let paths: Vec<&PathBuf> = images.iter().collect();
    let mut out = Vec::new();
    let batch = load_batch(&paths, spec).unwrap();
    runner
        .run(batch, &[name.to_string()], |_, v| out.extend_from_slice(v))
        .unwrap();
    out
}

#[test]
fn the_int8_graph_stores_int8_weights_and_tracks_the_float_graph() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = testing::checkpoint(dir.path(), "resnet18", 32);
    let images = images(dir.path(), 12);
    let calibrated = Calibrated::measure(&checkpoint, &library(), &images, SCHEME).unwrap();
    let int8 = calibrated.int8_bytes(RangeMethod::MinMax);

    let proto = ModelProto::decode(int8.as_slice()).unwrap();
    let graph = proto.graph.unwrap();
    let count = |op: &str| graph.node.iter().filter(|n| n.op_type() == op).count();
    // Every Conv (20 in resnet18) and the classifier read int8 weights.
    let int8_weights = graph
        .initializer
        .iter()
        .filter(|t| t.data_type() == DataType::Int8 as i32 && t.dims.len() >= 2)
        .count();
    assert_eq!((count("Conv"), int8_weights), (20, 21));
    assert!(count("QuantizeLinear") >= 20, "{}", count("QuantizeLinear"));
    // Relus after a quantized node are left to the QuantizeLinear after them.
    assert_eq!(count("Relu"), 0);
    let float_weights = graph
        .initializer
        .iter()
        .filter(|t| t.data_type() == DataType::Float as i32 && t.dims.len() >= 2);
    assert_eq!(float_weights.count(), 0);

    // The pooled features the classifier reads: 20 quantized layers deep.
    // (The 3 random logits themselves are differences of large sums, which
    // magnify any error; a trained head does not.)
    let head = *calibrated.plan.weighted.last().unwrap();
    let features = calibrated.model.graph.nodes[head].inputs[0].clone();
    let spec = &calibrated.model.meta.preprocess;
    let with_features = |bytes: &[u8]| {
        let mut proto = ModelProto::decode(bytes).unwrap();
        crate::emit::add_outputs(&mut proto, std::slice::from_ref(&features));
        values(&proto.encode_to_vec(), &images, spec, &features)
    };
    let fp32 = with_features(&calibrated.fp32_bytes());
    let q = with_features(&int8);
    let rms = |v: &[f32]| (v.iter().map(|x| x * x).sum::<f32>() / v.len() as f32).sqrt();
    let diff: Vec<f32> = fp32.iter().zip(&q).map(|(a, b)| a - b).collect();
    let relative = rms(&diff) / rms(&fp32);
    assert!(
        relative > 0.0 && relative < 0.1,
        "relative RMS error {relative}"
    );
}

fn request(dir: &Path, max_drop_points: f64, force: bool) -> Int8Request {
    testing::int8_request(&images(dir, 10), max_drop_points, force)
}

#[test]
fn the_export_measures_both_graphs_and_refuses_a_loss_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = testing::checkpoint(dir.path(), "lcnet_050", 32);
    // No int8 model can gain 101 points: this bound always refuses.
    let err = export_int8(&checkpoint, &library(), &request(dir.path(), -101.0, false))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("on 4 held-out images") && err.contains("--force"),
        "{err}"
    );

    let model = export_int8(&checkpoint, &library(), &request(dir.path(), -101.0, true)).unwrap();
    let q = model.quantization.unwrap();
    assert_eq!((q.calibration.images, q.evaluation.images), (6, 4));
    assert_eq!(q.calibration.method, "percentile 99.999");
    let e = &q.evaluation;
    for share in [e.fp32_top1, e.int8_top1, e.top1_agreement] {
        assert!((0.0..=1.0).contains(&share) && share * 4.0 == (share * 4.0).round());
    }
    assert!(ModelProto::decode(model.bytes.as_slice()).is_ok());
}

#[test]
fn bad_images_and_empty_lists_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = testing::checkpoint(dir.path(), "lcnet_050", 32);
    let mut req = request(dir.path(), 1.0, false);
    let broken = dir.path().join("broken.png");
    std::fs::write(&broken, b"not a png").unwrap();
    req.images.calibration.push(broken.clone());
    let err = export_int8(&checkpoint, &library(), &req)
        .unwrap_err()
        .to_string();
    assert!(err.starts_with(&broken.display().to_string()), "{err}");
    req.images.evaluation.clear();
    let err = export_int8(&checkpoint, &library(), &req)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no evaluation images"), "{err}");
}
