//! Packages, tokens, images and a server for the tests.

use std::collections::BTreeMap;
use std::fs;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use semiclass_exporter::OnnxModel;
use semiclass_exporter::package::{PackageRequest, write_package};
use semiclass_manifest::PreprocessSpec;
use semiclass_manifest::checkpoint::{CheckpointMeta, Role};
use semiclass_manifest::package::{PackageManifest, Target};
use semiclass_preprocess::{DecodeLimits, preprocess_bytes};
use semiclass_serve::tokens::TokenStore;
use semiclass_serve::{AppState, BatchSettings, Limits, ServeConfig};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tempfile::TempDir;
use tower::ServiceExt;

pub const CLASSES: [&str; 6] = ["cat", "dog", "康乃馨", "sunflower", "daisy", "tulip"];

/// The weights of a tiny linear model (see `fixtures/make_tiny_onnx.py`).
#[derive(Debug, Clone, Deserialize)]
pub struct Weights {
    conv_w: Vec<[f32; 3]>,
    conv_b: Vec<f32>,
    fc_w: Vec<Vec<f32>>,
    fc_b: Vec<f32>,
}

impl Weights {
    /// The model's logits for a CHW tensor: it sees only channel means.
    pub fn logits(&self, chw: &[f32]) -> Vec<f32> {
        let plane = chw.len() / 3;
        let mean: Vec<f32> = (0..3)
            .map(|c| chw[c * plane..(c + 1) * plane].iter().sum::<f32>() / plane as f32)
            .collect();
        let hidden: Vec<f32> = (0..self.conv_w.len())
            .map(|o| self.conv_b[o] + (0..3).map(|c| self.conv_w[o][c] * mean[c]).sum::<f32>())
            .collect();
        (0..self.fc_w.len())
            .map(|k| {
                self.fc_b[k]
                    + hidden
                        .iter()
                        .zip(&self.fc_w[k])
                        .map(|(h, w)| h * w)
                        .sum::<f32>()
            })
            .collect()
    }
}

/// Two unpacked packages (a large one at 24 px, a small one at 16 px), a
/// token file with one active and one revoked token.
pub struct Fixture {
    pub dir: TempDir,
    pub large: PathBuf,
    pub small: PathBuf,
    pub tokens: PathBuf,
    pub token: String,
    pub revoked_token: String,
    /// By package id.
    pub weights: BTreeMap<String, (Weights, PreprocessSpec)>,
    ids: [String; 2],
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let mut weights = BTreeMap::new();
        let mut write = |role, size, seed| {
            let model = tiny_model(CLASSES.len(), size, seed);
            let (package, manifest) = write_package_of(dir.path(), &model, role, size);
            let w: Weights =
                serde_json::from_str(&fs::read_to_string(model.join("weights.json")).unwrap())
                    .unwrap();
            let id = manifest.package_id;
            weights.insert(id.clone(), (w, manifest.model.preprocess));
            (package, id)
        };
        let (large, large_id) = write(Role::Large, 24, 1);
        let (small, small_id) = write(Role::Small, 16, 2);
        let tokens = dir.path().join("tokens.json");
        let store = TokenStore::new(&tokens);
        let (_, token) = store.create("tests", 1).unwrap();
        let (revoked, revoked_token) = store.create("old", 1).unwrap();
        store.revoke(&revoked.id, 2).unwrap();
        Fixture {
            dir,
            large,
            small,
            tokens,
            token,
            revoked_token,
            weights,
            ids: [large_id, small_id],
        }
    }

    /// The large model's package id (as the exporter names it).
    pub fn large_id(&self) -> &str {
        &self.ids[0]
    }

    /// The small model's package id.
    pub fn small_id(&self) -> &str {
        &self.ids[1]
    }

    /// Settings small enough for tests.
    pub fn config(&self) -> ServeConfig {
        ServeConfig {
            packages: vec![self.large.clone(), self.small.clone()],
            tokens: self.tokens.clone(),
            onnxruntime: Some(onnxruntime()),
            limits: Limits {
                max_body_bytes: 1 << 20,
                max_pixels: 1_000_000,
                max_images: 8,
                ..Limits::default()
            },
            batch: BatchSettings {
                max_batch: 8,
                max_wait: Duration::from_millis(2),
                sessions: 2,
                threads: 1,
            },
            decode_threads: 2,
            issuer: None,
            allow_cpu_fallback: false,
        }
    }

    pub fn state(&self) -> Arc<AppState> {
        Arc::new(AppState::load(&self.config()).unwrap())
    }

    /// The scores the model of `id` must give `image`: the shared
    /// preprocessing, the model's weights, a softmax.
    pub fn expected_scores(&self, id: &str, image: &[u8]) -> Vec<f32> {
        let (weights, spec) = &self.weights[id];
        let tensor = preprocess_bytes(image, DecodeLimits::default(), spec).unwrap();
        let logits = weights.logits(&tensor.data);
        let max = logits.iter().copied().fold(f32::MIN, f32::max);
        let exps: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
        let sum: f32 = exps.iter().sum();
        exps.iter().map(|e| e / sum).collect()
    }

    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.token)
    }

    /// `config` with an issuer behind `/v1/activate`: a fresh database and
    /// vendor key in the fixture's folder. Returns the keyring that trusts
    /// the key, and the database.
    pub fn add_issuer(&self, config: &mut ServeConfig) -> (semiclass_licensing::Keyring, PathBuf) {
        let (db, key_path) = (
            self.dir.path().join("issuer.sqlite"),
            self.dir.path().join("vendor.key"),
        );
        let key = semiclass_license_issuer::keys::generate();
        semiclass_license_issuer::keys::write_private_key(&key_path, &key).unwrap();
        config.issuer = Some((db.clone(), key_path));
        let mut keyring = semiclass_licensing::Keyring::default();
        keyring.insert(key.verifying_key());
        (keyring, db)
    }
}

/// The ONNX Runtime library the tests load.
pub fn onnxruntime() -> PathBuf {
    std::env::var_os("ORT_DYLIB_PATH")
        .map(PathBuf::from)
        .expect(
            "set ORT_DYLIB_PATH to the onnxruntime wheel's libonnxruntime.so (`make test` does)",
        )
}

/// A tiny model made once by the fixture script (with the venv's `onnx`)
/// and kept under the target folder; a folder appears only complete.
pub fn tiny_model(classes: usize, size: u32, seed: u32) -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/make_tiny_onnx.py");
    let version = hex(&Sha256::digest(fs::read(&script).unwrap())[..6]);
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("serve-fixtures");
    let dir = root.join(format!("tiny-{classes}-{size}-{seed}-{version}"));
    if dir.join("weights.json").exists() {
        return dir;
    }
    fs::create_dir_all(&root).unwrap();
    let partial = tempfile::tempdir_in(&root).unwrap();
    let status = Command::new("python3")
        .arg(&script)
        .arg(partial.path())
        .args([classes.to_string(), size.to_string(), seed.to_string()])
        .status()
        .expect("python3 with the `onnx` package on PATH (the dev venv; `make test` sets it)");
    assert!(status.success(), "{} failed", script.display());
    // Another test process may have won the race: either copy is fine.
    let _ = fs::rename(partial.keep(), &dir);
    dir
}

/// The package of the tiny model in `model` at `size` px, written by the
/// exporter's writer as `semiclass export --without-sdk` writes one, and
/// unpacked under `dir`: ImageNet normalisation, the timm evaluation crop.
/// Its ONNX Runtime library is a placeholder: the server under test loads
/// the real one named by `ServeConfig::onnxruntime` (or ORT_DYLIB_PATH).
pub fn write_package_of(
    dir: &Path,
    model: &Path,
    role: Role,
    size: u32,
) -> (PathBuf, PackageManifest) {
    let runtime = dir.join("placeholder-onnxruntime");
    fs::create_dir_all(&runtime).unwrap();
    fs::write(runtime.join("libonnxruntime.so.1.32.0"), b"placeholder").unwrap();
    write_target_package(dir, model, (role, size), (Target::CpuX86_64, &runtime))
}

/// [`write_package_of`] for `target`, shipping the runtime in `runtime`.
pub fn write_target_package(
    dir: &Path,
    model: &Path,
    (role, size): (Role, u32),
    (target, runtime): (Target, &Path),
) -> (PathBuf, PackageManifest) {
    let classes = CLASSES.iter().map(|c| c.to_string()).collect();
    let (mean, std) = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]);
    let preprocess = PreprocessSpec::for_input(size, mean, std);
    // Named by role, so the large model sorts (and is listed) first.
    let arch = format!("tiny_{role:?}").to_lowercase();
    let mut meta = CheckpointMeta::untrained(&arch, classes, size, preprocess, "test");
    meta.role = role;
    let onnx = OnnxModel::prebuilt(fs::read(model.join("model.onnx")).unwrap(), meta);
    let built = write_package(
        &onnx,
        &PackageRequest {
            target,
            out_dir: &dir.join("zips"),
            runtime_dir: Some(runtime),
            sdk: None,
            vendor_keys: None,
            replace: false,
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let unpacked = dir.join(&built.manifest.package_id);
    semiclass_package::unpack(&built.path, &unpacked).unwrap();
    (unpacked, built.manifest)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A PNG of `width` x `height` with a colour gradient seeded by `seed`.
pub fn png(width: u32, height: u32, seed: u8) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([
            (x * 7 + u32::from(seed) * 40) as u8,
            (y * 5 + u32::from(seed) * 90) as u8,
            seed.wrapping_mul(61),
        ])
    });
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// A GIF of 0x0 pixels (`tests/fixtures/images/zero.gif`).
pub fn zero_gif() -> Vec<u8> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    fs::read(root.join("tests/fixtures/images/zero.gif")).unwrap()
}

/// A small PNG whose header declares `width` x `height`: a decompression
/// bomb as the header check sees it (the pixels would be all zeros).
pub fn png_bomb(width: u32, height: u32) -> Vec<u8> {
    let mut header = width.to_be_bytes().to_vec();
    header.extend(height.to_be_bytes());
    header.extend([8, 2, 0, 0, 0]);
    // zlib of a few zero bytes: a start of the pixel stream.
    let idat = [
        0x78, 0x9c, 0x63, 0x60, 0x60, 0x60, 0x00, 0x00, 0x00, 0x04, 0x00, 0x01,
    ];
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    for (kind, data) in [
        (b"IHDR", &header[..]),
        (b"IDAT", &idat[..]),
        (b"IEND", &[][..]),
    ] {
        png.extend((data.len() as u32).to_be_bytes());
        let mut chunk = kind.to_vec();
        chunk.extend(data);
        png.extend(&chunk);
        png.extend(crc32(&chunk).to_be_bytes());
    }
    png
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A multipart body with one part per image.
pub fn multipart(images: &[Vec<u8>]) -> (String, Vec<u8>) {
    let boundary = "semiclass-test-boundary";
    let mut body = Vec::new();
    for (i, image) in images.iter().enumerate() {
        body.extend(format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{i}.png\"\r\nContent-Type: image/png\r\n\r\n"
        ).as_bytes());
        body.extend(image);
        body.extend(b"\r\n");
    }
    body.extend(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// One request through the router, no socket.
pub async fn send(app: &Router, request: Request<Body>) -> (StatusCode, HeaderMap, Bytes) {
    let response = app.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    (
        parts.status,
        parts.headers,
        body.collect().await.unwrap().to_bytes(),
    )
}

/// A POST of `body` as `content_type` with the fixture's token.
pub fn post(fixture: &Fixture, uri: &str, content_type: &str, body: Vec<u8>) -> Request<Body> {
    Request::post(uri)
        .header(header::AUTHORIZATION, fixture.bearer())
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .unwrap()
}

/// A GET with an optional `Authorization` value.
pub fn get(uri: &str, authorization: Option<&str>) -> Request<Body> {
    let mut request = Request::get(uri);
    if let Some(value) = authorization {
        request = request.header(header::AUTHORIZATION, value);
    }
    request.body(Body::empty()).unwrap()
}

/// The `{code, message}` of an error answer; panics on anything else.
pub fn error_code(body: &[u8]) -> String {
    let error: semiclass_serve::ErrorBody = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not an error body ({e}): {}", String::from_utf8_lossy(body)));
    assert!(!error.message.is_empty());
    error.code
}

/// An Open Inference Protocol request for one image file, as JSON (the
/// file base64).
pub fn v2_request(image: &[u8]) -> Vec<u8> {
    use base64::Engine;
    let data = base64::engine::general_purpose::STANDARD.encode(image);
    serde_json::json!({
        "inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [data]}],
    })
    .to_string()
    .into_bytes()
}

/// The server's OpenAPI document, fetched as a client would.
pub async fn openapi(app: &Router, fixture: &Fixture) -> serde_json::Value {
    let (status, _, body) = send(app, get("/openapi.json", Some(&fixture.bearer()))).await;
    assert_eq!(status, StatusCode::OK);
    serde_json::from_slice(&body).unwrap()
}

/// Every (method, path template, needs a token) that `document` lists;
/// an operation needs the token when it names a security requirement.
pub fn documented_routes(document: &serde_json::Value) -> Vec<(Method, String, bool)> {
    let mut routes = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let guarded = operation["security"]
                .as_array()
                .is_some_and(|s| s.iter().any(|r| r.get("bearer").is_some()));
            routes.push((method, path.clone(), guarded));
        }
    }
    routes
}

/// A path template with the model `id` and version 1 filled in.
pub fn concrete(path: &str, id: &str) -> String {
    path.replace("{id}", id).replace("{version}", "1")
}

/// One sample line of the Prometheus text format.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// The samples of a Prometheus text exposition (format 0.0.4), checking
/// what a scraper checks: each sample belongs to a family that was given a
/// HELP and a TYPE before it, label values are quoted and escaped, values
/// are numbers. Returns the samples and the families' types.
pub fn parse_exposition(text: &str) -> (Vec<Sample>, BTreeMap<String, String>) {
    let mut types = BTreeMap::new();
    let mut helped = std::collections::BTreeSet::new();
    let mut samples = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap();
            assert!(!help.is_empty(), "{line}");
            helped.insert(name.to_string());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(helped.contains(name), "TYPE before HELP: {line}");
            types.insert(name.to_string(), kind.to_string());
        } else {
            assert!(!line.starts_with('#'), "unknown comment: {line}");
            let sample = parse_sample(line);
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| sample.name.strip_suffix(s))
                .filter(|f| types.get(*f).is_some_and(|t| t == "histogram"))
                .unwrap_or(&sample.name);
            assert!(types.contains_key(family), "no TYPE for {line}");
            samples.push(sample);
        }
    }
    (samples, types)
}

fn parse_sample(line: &str) -> Sample {
    let (series, value) = line.rsplit_once(' ').unwrap();
    let value = match value {
        "+Inf" => f64::INFINITY,
        v => v.parse().unwrap_or_else(|e| panic!("{e}: {line}")),
    };
    let Some((name, labels)) = series.split_once('{') else {
        return Sample {
            name: series.to_string(),
            labels: BTreeMap::new(),
            value,
        };
    };
    let labels = labels.strip_suffix('}').unwrap_or_else(|| panic!("{line}"));
    Sample {
        name: name.to_string(),
        labels: parse_labels(labels, line),
        value,
    }
}

/// `a="x",b="y\"z"` -> {a: x, b: y"z}.
fn parse_labels(mut text: &str, line: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    while !text.is_empty() {
        let (key, rest) = text.split_once("=\"").unwrap_or_else(|| panic!("{line}"));
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    other => panic!("bad escape {other:?} in {line}"),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => panic!("unterminated label value in {line}"),
            }
        };
        labels.insert(key.to_string(), value);
        text = rest[end + 1..]
            .strip_prefix(',')
            .unwrap_or(&rest[end + 1..]);
    }
    labels
}

/// The value of the one sample `name` with `labels`.
pub fn sample(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let wanted: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    samples
        .iter()
        .find(|s| s.name == name && s.labels == wanted)
        .unwrap_or_else(|| panic!("no {name} {labels:?} in {samples:#?}"))
        .value
}
