//! Checkpoint -> ONNX model file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use prost::Message;
use safetensors::Dtype;
use semiclass_manifest::checkpoint::CheckpointMeta;
use semiclass_manifest::checkpoint_file::{CheckpointBytes, CheckpointError};
use semiclass_manifest::quantization::Quantization;
use semiclass_models::{Model, ModelError, ModelOptions};

use crate::backend::OnnxBackend;
use crate::emit::{ModelInfo, model_proto};
use crate::fold::{FoldReport, fold_batch_norms};
use crate::graph::{Const, Graph};

/// Name of the graph input: float32 NCHW images, the batch dimension symbolic.
pub const INPUT_NAME: &str = "input";
/// Name of the graph output: logits, `[batch, classes]`.
pub const OUTPUT_NAME: &str = "logits";

/// Keys of the model file's `metadata_props`, so that anything holding only
/// the `.onnx` file knows what the logits mean and how to make the input.
pub mod metadata_keys {
    /// JSON array of class names, index i naming logit i.
    pub const CLASS_NAMES: &str = "class_names";
    /// JSON of the checkpoint's `PreprocessSpec`.
    pub const PREPROCESS: &str = "preprocess";
    /// timm model name.
    pub const ARCH: &str = "arch";
    /// sha256 of the checkpoint the model was exported from.
    pub const CHECKPOINT_SHA256: &str = "checkpoint_sha256";
}

/// Why a checkpoint could not be exported.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("{path}: {source}")]
    Model { path: PathBuf, source: ModelError },
    #[error("{path}: does not fit {model}: {details}")]
    Mismatch {
        path: PathBuf,
        model: String,
        details: String,
    },
    #[error(
        "{path}: {names} class names for {classes} outputs; the checkpoint's metadata is inconsistent"
    )]
    ClassNames {
        path: PathBuf,
        names: usize,
        classes: usize,
    },
}

/// An exported model file and where it came from.
#[derive(Debug, Clone)]
pub struct OnnxModel {
    /// The serialized `ModelProto`.
    pub bytes: Vec<u8>,
    pub meta: CheckpointMeta,
    pub checkpoint_sha256: String,
    pub fold: FoldReport,
    /// For an int8 model: how it was made and what it was measured to lose.
    pub quantization: Option<Quantization>,
}

impl OnnxModel {
    /// A model graph made elsewhere (a test's tiny hand-built graph, a
    /// benchmark's timm export) with what `meta` says about it, to be
    /// packaged by [`crate::package::write_package`] like an export. It has
    /// no checkpoint: its `checkpoint_sha256` is all zeros. The graph must
    /// take [`INPUT_NAME`] and give [`OUTPUT_NAME`], as exports do.
    pub fn prebuilt(bytes: Vec<u8>, meta: CheckpointMeta) -> OnnxModel {
        OnnxModel {
            bytes,
            meta,
            checkpoint_sha256: "00".repeat(32),
            fold: FoldReport::default(),
            quantization: None,
        }
    }
}

/// Exports the checkpoint at `path` (see the crate doc).
pub fn export_checkpoint(path: &Path) -> Result<OnnxModel, ExportError> {
    Ok(record_checkpoint(path)?.into_model())
}

/// A checkpoint recorded as a float graph, BatchNorm folded, not yet
/// encoded: what the fp32 model file is written from, and what the int8
/// export ([`crate::quantize`]) rewrites.
#[derive(Debug)]
pub struct RecordedModel {
    pub graph: Graph,
    pub info: ModelInfo<'static>,
    pub meta: CheckpointMeta,
    pub checkpoint_sha256: String,
    pub fold: FoldReport,
}

impl RecordedModel {
    /// The fp32 model file.
    pub fn into_model(self) -> OnnxModel {
        let bytes = model_proto(self.graph, &self.info).encode_to_vec();
        OnnxModel {
            bytes,
            meta: self.meta,
            checkpoint_sha256: self.checkpoint_sha256,
            fold: self.fold,
            quantization: None,
        }
    }
}

/// Reads the checkpoint at `path` and records its forward pass.
pub fn record_checkpoint(path: &Path) -> Result<RecordedModel, ExportError> {
    let file = CheckpointBytes::read(path)?;
    let meta = file.meta()?;
    if meta.class_names.len() != meta.num_classes {
        return Err(ExportError::ClassNames {
            path: path.into(),
            names: meta.class_names.len(),
            classes: meta.num_classes,
        });
    }
    let options =
        ModelOptions::new(meta.num_classes, meta.input_size as usize).with_stem(meta.stem);
    let model = Model::new(&meta.model, options).map_err(|source| ExportError::Model {
        path: path.into(),
        source,
    })?;
    let mismatch = |details: String| ExportError::Mismatch {
        path: path.into(),
        model: model.entry.name.to_string(),
        details,
    };
    let weights = float_tensors(&file).map_err(&mismatch)?;
    let mut graph = record(&model, weights).map_err(mismatch)?;
    let fold = fold_batch_norms(&mut graph);
    graph.prune_consts();
    let checkpoint_sha256 = file.sha256();
    let info = model_info(&model, &meta, &checkpoint_sha256, path);
    Ok(RecordedModel {
        graph,
        info,
        meta,
        checkpoint_sha256,
        fold,
    })
}

/// PyTorch's BatchNorm counter, in every state dict and used by no forward pass.
fn ignored(name: &str) -> bool {
    name.ends_with(".num_batches_tracked")
}

/// Every tensor of the file as float32 constants; a list of problems otherwise.
fn float_tensors(file: &CheckpointBytes) -> Result<HashMap<String, Const>, String> {
    let mut out = HashMap::new();
    let mut problems = Vec::new();
    for (name, view) in file.tensors().tensors() {
        if ignored(&name) {
            continue;
        }
        if view.dtype() != Dtype::F32 {
            problems.push(format!("tensor '{name}' is {:?}, not F32", view.dtype()));
            continue;
        }
        let values = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect();
        out.insert(name, Const::f32(view.shape(), values));
    }
    match problems.is_empty() {
        true => Ok(out),
        false => Err(problems.join("; ")),
    }
}

/// Runs the model's forward code on the ONNX backend; every tensor that is
/// missing, misshapen or unexpected is reported at once.
pub fn record(model: &Model, weights: HashMap<String, Const>) -> Result<Graph, String> {
    let size = model.options.input_size;
    let (mut b, input) = OnnxBackend::new(weights, vec![1, 3, size, size]);
    let logits = model.forward(&mut b, &input);
    let mut problems = std::mem::take(&mut b.problems);
    let mut extra: Vec<&String> = b.leftover_weights().collect();
    extra.sort();
    problems.extend(extra.iter().map(|n| format!("unexpected tensor '{n}'")));
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    let mut graph = b.shape_error()?;
    rename_output(&mut graph, &logits.name);
    Ok(graph)
}

/// Gives the value `from` the graph output's reserved name.
fn rename_output(g: &mut Graph, from: &str) {
    let to = g.output.clone();
    let names = g
        .nodes
        .iter_mut()
        .flat_map(|n| n.inputs.iter_mut().chain(&mut n.outputs));
    for name in names.filter(|n| *n == from) {
        *name = to.clone();
    }
}

fn model_info(
    model: &Model,
    meta: &CheckpointMeta,
    sha256: &str,
    path: &Path,
) -> ModelInfo<'static> {
    use metadata_keys as k;
    let file = path
        .file_name()
        .map_or(String::new(), |n| n.to_string_lossy().into_owned());
    ModelInfo {
        name: model.entry.name,
        doc: format!(
            "{} exported by semiclass from {file}: float32 NCHW input, logits for {} classes",
            model.entry.name, meta.num_classes
        ),
        input_chw: [3, model.options.input_size, model.options.input_size],
        num_classes: meta.num_classes,
        metadata: vec![
            (k::ARCH.into(), model.entry.name.into()),
            (k::CLASS_NAMES.into(), to_json(&meta.class_names)),
            (k::PREPROCESS.into(), to_json(&meta.preprocess)),
            (k::CHECKPOINT_SHA256.into(), sha256.into()),
        ],
    }
}

fn to_json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).expect("strings and numbers serialize")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::type_proto;
    use crate::testing;

    fn dims(v: &crate::onnx::ValueInfoProto) -> Vec<String> {
        let Some(type_proto::Value::TensorType(t)) =
            v.r#type.as_ref().and_then(|t| t.value.clone())
        else {
            panic!("a tensor type")
        };
        let dim = t.shape.unwrap().dim;
        dim.iter()
            .map(|d| format!("{:?}", d.value.as_ref().unwrap()))
            .collect()
    }

    #[test]
    fn every_family_exports_with_batch_norm_folded() {
        let dir = tempfile::tempdir().unwrap();
        for (name, size) in semiclass_models::registry::SMALL_MEMBERS {
            let model = Model::new(name, ModelOptions::new(3, size)).unwrap();
            let batch_norms = model
                .params()
                .iter()
                .filter(|p| p.name.ends_with("running_mean"))
                .count();
            assert_eq!(batch_norms == 0, name.contains("_patch"), "{name}");
            let onnx = export_checkpoint(&testing::checkpoint(dir.path(), name, size)).unwrap();
            assert_eq!(
                (onnx.fold.folded, onnx.fold.affine.len()),
                (batch_norms, 0),
                "{name}"
            );
            let proto = crate::onnx::ModelProto::decode(onnx.bytes.as_slice()).unwrap();
            assert_eq!(
                (proto.ir_version, proto.opset_import[0].version),
                (Some(8), Some(17))
            );
            let graph = proto.graph.unwrap();
            assert!(
                graph
                    .node
                    .iter()
                    .all(|n| n.op_type() != "BatchNormalization"),
                "{name}"
            );
            let s = format!("DimValue({size})");
            assert_eq!(
                dims(&graph.input[0]),
                ["DimParam(\"batch\")", "DimValue(3)", &s, &s]
            );
            assert_eq!(
                dims(&graph.output[0]),
                ["DimParam(\"batch\")", "DimValue(3)"]
            );
            assert_eq!(
                (graph.input[0].name(), graph.output[0].name()),
                (INPUT_NAME, OUTPUT_NAME)
            );
            let keys: Vec<&str> = proto.metadata_props.iter().map(|p| p.key()).collect();
            assert_eq!(
                keys,
                ["arch", "class_names", "preprocess", "checkpoint_sha256"]
            );
            assert_eq!(proto.metadata_props[1].value(), r#"["c0","c1","c2"]"#);
        }
    }

    #[test]
    fn a_checkpoint_that_does_not_fit_lists_every_problem() {
        let dir = tempfile::tempdir().unwrap();
        let model = Model::new("resnet18", ModelOptions::new(3, 32)).unwrap();
        let mut tensors = testing::random_tensors(&model);
        tensors.retain(|(n, _, _)| n != "layer1.0.bn1.running_var");
        let fc = tensors
            .iter_mut()
            .find(|(n, _, _)| n == "fc.weight")
            .unwrap();
        fc.1 = vec![fc.1[1], fc.1[0]];
        tensors.push(("extra.weight".into(), vec![1], vec![0.0]));
        tensors.push(("bn1.num_batches_tracked".into(), vec![1], vec![0.0]));
        let path = dir.path().join("bad.safetensors");
        testing::write_checkpoint(&path, &tensors, &testing::meta(&model));
        let err = export_checkpoint(&path).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{}: does not fit resnet18: ", path.display())),
            "{err}"
        );
        for part in [
            "no tensor 'layer1.0.bn1.running_var'",
            "tensor 'fc.weight' has shape [512, 3], the model needs [3, 512]",
            "unexpected tensor 'extra.weight'",
        ] {
            assert!(err.contains(part), "{err}");
        }
        assert!(!err.contains("num_batches_tracked"), "{err}");
    }

    #[test]
    fn inconsistent_metadata_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let model = Model::new("lcnet_050", ModelOptions::new(3, 32)).unwrap();
        let mut meta = testing::meta(&model);
        meta.class_names.pop();
        let path = dir.path().join("m.safetensors");
        testing::write_checkpoint(&path, &testing::random_tensors(&model), &meta);
        let err = export_checkpoint(&path).unwrap_err().to_string();
        assert!(err.contains("2 class names for 3 outputs"), "{err}");
        meta = testing::meta(&model);
        meta.model = "resnet5".into();
        testing::write_checkpoint(&path, &testing::random_tensors(&model), &meta);
        let err = export_checkpoint(&path).unwrap_err().to_string();
        assert!(err.contains("unknown model 'resnet5'"), "{err}");
    }
}
