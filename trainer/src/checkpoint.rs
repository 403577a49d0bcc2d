//! Checkpoint and resume files.
//!
//! A checkpoint is a `.safetensors` file of the model's tensors in timm's
//! names (contiguous f32), so timm, Hugging Face tools and our own
//! pretrained-weights loader read it unchanged; its [`CheckpointMeta`]
//! travels inside it as JSON under the `semiclass` key of the header's
//! `__metadata__` map. A resume state file has the same shape: optimizer,
//! EMA and other tensors in their own dtypes, the rest of the state as JSON
//! under `semiclass_state`.
//!
//! Files are serialized in memory and written atomically (temporary file,
//! fsync, rename, fsync of the folder): a crash or a full disk never
//! leaves a half-written checkpoint where the previous one was.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;

use safetensors::tensor::{Dtype, View};
use semiclass_dataset::fsutil::write_atomic;
use semiclass_manifest::checkpoint::CheckpointMeta;
use semiclass_manifest::checkpoint_file::{CheckpointBytes, serialize_sorted, sha256_hex};
use tch::{Device, Kind, Tensor};

pub use semiclass_manifest::checkpoint_file::{
    CheckpointError, META_KEY, STATE_KEY, read_meta, sha256_file,
};

/// Writes the model tensors `tensors` (timm names) with `meta` to `path`
/// atomically; returns the file's sha256 (lowercase hex).
pub fn save_checkpoint(
    path: &Path,
    tensors: &[(&str, &Tensor)],
    meta: &CheckpointMeta,
) -> Result<String, CheckpointError> {
    if let Some((name, value)) = meta.metrics.iter().find(|(_, v)| !v.is_finite()) {
        return Err(CheckpointError::Metric {
            path: path.to_path_buf(),
            name: name.clone(),
            value: *value,
        });
    }
    let json = serde_json::to_string(meta).map_err(|e| CheckpointError::BadMeta {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let tensors = tensors.iter().map(|(n, t)| (*n, *t));
    write(path, tensors, Some(Kind::Float), (META_KEY, json))
}

/// Writes the resume state of a run: named tensors in their own dtypes
/// (optimizer, EMA) and `json_state` (RNG, step, algorithm state).
pub fn save_state(
    path: &Path,
    tensors: &[(String, Tensor)],
    json_state: &serde_json::Value,
) -> Result<String, CheckpointError> {
    let tensors = tensors.iter().map(|(n, t)| (n.as_str(), t));
    write(path, tensors, None, (STATE_KEY, json_state.to_string()))
}

/// Reads a checkpoint: its metadata and its tensors (on the CPU, sorted
/// by name).
pub fn load_weights(
    path: &Path,
) -> Result<(CheckpointMeta, Vec<(String, Tensor)>), CheckpointError> {
    let file = CheckpointBytes::read(path)?;
    Ok((file.meta()?, tch_tensors(&file)?))
}

/// Reads a resume state file written by [`save_state`].
pub fn load_state(
    path: &Path,
) -> Result<(Vec<(String, Tensor)>, serde_json::Value), CheckpointError> {
    let file = CheckpointBytes::read(path)?;
    let Some(json) = file.metadata.get(STATE_KEY) else {
        return Err(CheckpointError::NotState {
            path: path.to_path_buf(),
        });
    };
    let tensors = tch_tensors(&file)?;
    let state = serde_json::from_str(json).map_err(|e| CheckpointError::BadMeta {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    Ok((tensors, state))
}

/// A tensor on the CPU, contiguous, in a dtype safetensors knows. Its
/// bytes are copied out only while the file is assembled, one tensor at a
/// time, so the model is not held twice more in memory.
struct CpuTensor {
    tensor: Tensor,
    dtype: Dtype,
    shape: Vec<usize>,
}

impl CpuTensor {
    /// `t` on the CPU, converted to `kind` if given. Channels-last tensors
    /// become NCHW memory, as PyTorch saves them.
    fn new(t: &Tensor, kind: Option<Kind>) -> Result<Self, tch::TchError> {
        let t = t.f_detach()?.f_to_device(Device::Cpu)?;
        let t = match kind {
            Some(kind) => t.f_to_kind(kind)?,
            None => t,
        };
        let tensor = t.f_contiguous()?;
        let dtype = Dtype::try_from(tensor.kind())?;
        let shape = tensor.size().iter().map(|&d| d as usize).collect();
        Ok(CpuTensor {
            tensor,
            dtype,
            shape,
        })
    }
}

impl View for CpuTensor {
    fn dtype(&self) -> Dtype {
        self.dtype
    }

    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn data(&self) -> Cow<'_, [u8]> {
        let mut data = vec![0; self.data_len()];
        self.tensor
            .f_copy_data_u8(&mut data, self.tensor.numel())
            .expect("CpuTensor::new made it contiguous, on the CPU, of a safetensors dtype");
        data.into()
    }

    fn data_len(&self) -> usize {
        self.tensor.numel() * self.tensor.kind().elt_size_in_bytes()
    }
}

/// Serializes `tensors` (converted to `kind` if given) with one JSON entry
/// in `__metadata__`, writes the bytes atomically and returns their sha256.
fn write<'a>(
    path: &Path,
    tensors: impl Iterator<Item = (&'a str, &'a Tensor)>,
    kind: Option<Kind>,
    (key, json): (&str, String),
) -> Result<String, CheckpointError> {
    let tensor_error = |name: &str, message: String| CheckpointError::Tensor {
        path: path.to_path_buf(),
        name: name.to_string(),
        message,
    };
    let mut views: Vec<(String, CpuTensor)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (name, t) in tensors {
        if !seen.insert(name) {
            return Err(tensor_error(name, "given twice".into()));
        }
        let view = CpuTensor::new(t, kind).map_err(|e| tensor_error(name, e.to_string()))?;
        views.push((name.to_string(), view));
    }
    // "format": "pt" is what Hugging Face loaders look for in PyTorch files.
    let metadata = BTreeMap::from([
        (key.to_string(), json),
        ("format".to_string(), "pt".to_string()),
    ]);
    // The same weights and metadata give the same bytes (and sha256).
    let bytes = serialize_sorted(path, views, metadata)?;
    write_atomic(path, &bytes).map_err(|error| CheckpointError::Write {
        path: path.to_path_buf(),
        error,
    })?;
    Ok(sha256_hex(&bytes))
}

/// Every tensor of `file` as a tch tensor (on the CPU, sorted by name).
fn tch_tensors(file: &CheckpointBytes) -> Result<Vec<(String, Tensor)>, CheckpointError> {
    let mut tensors = Vec::new();
    for (name, view) in file.tensors().tensors() {
        match Tensor::try_from(view) {
            Ok(t) => tensors.push((name, t)),
            Err(e) => {
                return Err(CheckpointError::Tensor {
                    path: file.path.clone(),
                    message: e.to_string(),
                    name,
                });
            }
        }
    }
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(tensors)
}

#[cfg(test)]
mod tests {
    use semiclass_manifest::PreprocessSpec;
    use semiclass_manifest::checkpoint::{
        CHECKPOINT_FORMAT_VERSION, Role, TeacherRef, WeightsKind,
    };
    use semiclass_models::{Model, ModelOptions};

    use super::*;
    use crate::nn::Network;

    fn meta() -> CheckpointMeta {
        let mut meta = CheckpointMeta {
            format_version: CHECKPOINT_FORMAT_VERSION,
            model: "lcnet_050".into(),
            num_classes: 3,
            input_size: 32,
            stem: Default::default(),
            class_names: vec!["cat".into(), "dog".into(), "émeu".into()],
            preprocess: PreprocessSpec::for_input(32, [0.5; 3], [0.25; 3]),
            role: Role::Small,
            stage: "distill".into(),
            epoch: 7,
            step: 1234,
            metrics: BTreeMap::from([("val_top1".to_string(), 0.875)]),
            weights: WeightsKind::Ema,
            created: String::new(),
            created_unix: 0,
            run_id: Some("run-1".into()),
            run_dir: None,
            teacher: Some(TeacherRef {
                path: "runs/large/best.safetensors".into(),
                sha256: "ab".repeat(32),
            }),
        };
        meta.stamp_now();
        meta
    }

    fn network() -> Network {
        tch::manual_seed(0);
        let options = ModelOptions::new(3, 32);
        Network::new(Model::new("lcnet_050", options).unwrap(), Device::Cpu)
    }

    #[test]
    fn checkpoint_round_trip_loads_as_pretrained_weights_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("best.safetensors");
        let net = network();
        let sha = save_checkpoint(&path, &net.named_tensors(), &meta()).unwrap();
        assert_eq!(read_meta(&path).unwrap(), meta_with_time(&path));
        let (read, tensors) = load_weights(&path).unwrap();
        assert_eq!(read.class_names[2], "émeu");
        let mut want = net.named_tensors();
        want.sort_by_key(|(n, _)| *n);
        assert_eq!(tensors.len(), want.len());
        for ((name, t), (want_name, w)) in tensors.iter().zip(&want) {
            assert_eq!(name, want_name);
            assert!(t.is_contiguous() && t.kind() == Kind::Float);
            assert!(t.equal(&w.detach()), "{name}");
        }
        // Tensors in timm's names: the ordinary weight loader takes it.
        let mut other = Network::new(net.model.clone(), Device::Cpu);
        other.load_safetensors(&path).unwrap();
        let (loaded, saved) = (other.named_tensors(), net.named_tensors());
        assert!(loaded.iter().zip(&saved).all(|((_, a), (_, b))| a.equal(b)));
        assert_eq!(sha, sha256_file(&path).unwrap());
    }

    #[test]
    fn the_same_weights_and_metadata_give_byte_identical_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let (net, meta) = (network(), meta());
        let files: Vec<Vec<u8>> = (0..8)
            .map(|i| {
                let path = dir.path().join(format!("{i}.safetensors"));
                save_checkpoint(&path, &net.named_tensors(), &meta).unwrap();
                std::fs::read(&path).unwrap()
            })
            .collect();
        assert!(files.iter().all(|f| *f == files[0]));
    }

    /// `meta()` as saved at `path` (its timestamp is the one written).
    fn meta_with_time(path: &Path) -> CheckpointMeta {
        let saved = read_meta(path).unwrap();
        CheckpointMeta {
            created: saved.created.clone(),
            created_unix: saved.created_unix,
            ..meta()
        }
    }

    #[test]
    fn state_round_trip_keeps_dtypes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resume.safetensors");
        let tensors = vec![
            ("optim.adamw.0.step".to_string(), Tensor::from(3i64)),
            (
                "ema.w".to_string(),
                Tensor::from_slice(&[1.5f32, -2.0]).reshape([2, 1]),
            ),
        ];
        let json = serde_json::json!({"step": 12, "rng": [1, 2, 3]});
        save_state(&path, &tensors, &json).unwrap();
        let (read, read_json) = load_state(&path).unwrap();
        assert_eq!(read_json, json);
        assert_eq!(read.len(), 2);
        assert_eq!(read[0].0, "ema.w");
        assert!(read[0].1.equal(&tensors[1].1));
        assert_eq!(read[1].1.kind(), Kind::Int64);
        assert_eq!(read[1].1.int64_value(&[]), 3);
        let err = read_meta(&path).unwrap_err().to_string();
        assert!(err.contains("resume state file, not a checkpoint"), "{err}");
    }

    /// The names in `dir`, sorted.
    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_failed_write_keeps_the_previous_checkpoint_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("best.safetensors");
        let net = network();
        let sha = save_checkpoint(&path, &net.named_tensors(), &meta()).unwrap();
        let zeros = Tensor::zeros([2], (Kind::Float, Device::Cpu));
        let other = [("w", &zeros)];

        // The folder is gone.
        let missing = dir.path().join("gone").join("best.safetensors");
        let err = save_checkpoint(&missing, &other, &meta()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("{}: cannot write", missing.display()))
        );

        // The temporary file cannot be created (as in a read-only folder,
        // which root, running these tests in containers, could still write):
        // a folder squats on write_atomic's temporary name.
        let squatter = dir
            .path()
            .join(format!(".best.safetensors.partial-{}", std::process::id()));
        std::fs::create_dir(&squatter).unwrap();
        std::fs::write(squatter.join("f"), b"").unwrap();
        assert!(save_checkpoint(&path, &other, &meta()).is_err());
        std::fs::remove_dir_all(&squatter).unwrap();
        assert_eq!(sha256_file(&path).unwrap(), sha);

        // The temporary is written but cannot replace the target (a
        // non-empty folder): it is removed.
        let blocked = dir.path().join("blocked.safetensors");
        std::fs::create_dir(&blocked).unwrap();
        std::fs::write(blocked.join("f"), b"").unwrap();
        assert!(save_checkpoint(&blocked, &other, &meta()).is_err());
        assert_eq!(
            listing(dir.path()),
            ["best.safetensors", "blocked.safetensors"]
        );
        assert_eq!(sha256_file(&path).unwrap(), sha);
    }

    #[test]
    fn a_plain_weight_file_is_not_a_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("timm.safetensors");
        let t = Tensor::ones([2, 2], (Kind::Float, Device::Cpu));
        Tensor::write_safetensors(&[("fc.weight", &t)], &path).unwrap();
        let err = read_meta(&path).unwrap_err().to_string();
        assert!(err.starts_with(&path.display().to_string()), "{err}");
        assert!(err.contains("no semiclass metadata"), "{err}");
        assert!(matches!(
            load_state(&path),
            Err(CheckpointError::NotState { .. })
        ));

        let junk = dir.path().join("junk.safetensors");
        std::fs::write(&junk, b"PK\x03\x04 not a tensor file").unwrap();
        let err = read_meta(&junk).unwrap_err().to_string();
        assert!(err.contains("not a valid safetensors file"), "{err}");
        let err = read_meta(&dir.path().join("absent"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot read"), "{err}");
    }

    #[test]
    fn newer_formats_and_nan_metrics_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.safetensors");
        let t = Tensor::ones([1], (Kind::Float, Device::Cpu));
        let mut newer = meta();
        newer.format_version = CHECKPOINT_FORMAT_VERSION + 1;
        save_checkpoint(&path, &[("w", &t)], &newer).unwrap();
        let err = read_meta(&path).unwrap_err().to_string();
        assert!(err.contains("use a newer semiclass"), "{err}");
        let mut nan = meta();
        nan.metrics.insert("val_loss".into(), f64::NAN);
        let err = save_checkpoint(&path, &[("w", &t)], &nan).unwrap_err();
        assert!(
            err.to_string().contains("metric 'val_loss' is NaN"),
            "{err}"
        );
    }

    #[test]
    fn sha256_is_sha256sum() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        let t = Tensor::arange(10, (Kind::Float, Device::Cpu));
        let sha = save_checkpoint(&path, &[("w", &t)], &meta()).unwrap();
        let out = std::process::Command::new("sha256sum").arg(&path).output();
        let Ok(out) = out else {
            eprintln!("no sha256sum on this machine");
            return;
        };
        let printed = String::from_utf8(out.stdout).unwrap();
        assert_eq!(printed.split_whitespace().next(), Some(sha.as_str()));
        assert_eq!(sha256_file(&path).unwrap(), sha);
    }
}
