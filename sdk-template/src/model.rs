//! A verified, loaded model and its predictions.

use std::sync::Mutex;

use ort::session::Session;
use ort::value::Tensor;
use semiclass_licensing::{ActivationDir, Environment, LicensePayload, verify_package};
use semiclass_manifest::package::PackageManifest;
use semiclass_onnxruntime::device::{Device, Placement};
use semiclass_preprocess::{DecodeLimits, preprocess_bytes};
use serde::Serialize;

use crate::error::SdkError;
use crate::package::Package;
use crate::runtime;

/// One class of a top-k answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    pub class_id: usize,
    pub name: String,
    /// Softmax probability of the class.
    pub score: f32,
}

/// How a model is loaded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Run a cuda-x86_64 package on the CPU when its GPU cannot be used
    /// ([`Model::device`] says so); without it, opening fails with what the
    /// GPU lacks. `infer --allow-cpu-fallback`; the C library reads
    /// `SEMICLASS_ALLOW_CPU_FALLBACK=1`.
    pub allow_cpu_fallback: bool,
}

/// A package's model, loaded after its files and license were checked.
pub struct Model {
    manifest: PackageManifest,
    license: LicensePayload,
    device: Device,
    /// ort runs need `&mut`; a model handle is shared between threads.
    session: Mutex<Session>,
}

impl Model {
    /// Checks every file of the package against its manifest and the
    /// license in `activation` against `env` (signature, package, model
    /// hash, machine, dates, clock), then loads the model from the very
    /// bytes that were checked.
    pub fn open(
        package: &Package,
        activation: &ActivationDir,
        env: &Environment,
    ) -> Result<Model, SdkError> {
        Self::open_with(package, activation, env, LoadOptions::default())
    }

    /// [`Model::open`] with `options`.
    pub fn open_with(
        package: &Package,
        activation: &ActivationDir,
        env: &Environment,
        options: LoadOptions,
    ) -> Result<Model, SdkError> {
        let verified = verify_package(&package.dir, activation, env)?;
        let Some(library) = verified.runtime_library.as_deref() else {
            return Err(SdkError::Runtime {
                path: package.dir.clone(),
                reason: "ONNX Runtime cannot be loaded out of a zip: unpack the package and use its folder".into(),
            });
        };
        let placement = Placement {
            cuda: verified.manifest.runtime.cuda.as_ref(),
            allow_cpu_fallback: options.allow_cpu_fallback,
        };
        let (session, device) =
            runtime::session(library, &verified.model_path, &verified.model, placement)?;
        let model = &verified.manifest.model;
        let names = |outlets: &[ort::value::Outlet]| {
            outlets
                .iter()
                .map(|o| o.name().to_string())
                .collect::<Vec<_>>()
        };
        let (inputs, outputs) = (names(session.inputs()), names(session.outputs()));
        if !inputs.contains(&model.input_name) || !outputs.contains(&model.output_name) {
            return Err(SdkError::Model {
                path: verified.model_path,
                reason: format!(
                    "the manifest names input {:?} and output {:?}, the model has inputs {inputs:?} and outputs {outputs:?}",
                    model.input_name, model.output_name
                ),
            });
        }
        Ok(Model {
            manifest: verified.manifest,
            license: verified.license,
            device,
            session: Mutex::new(session),
        })
    }

    /// Where the model runs: the CPU, the GPU, or the CPU in place of the
    /// GPU (with the reason), which a front end should report.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The package's manifest (as verified).
    pub fn manifest(&self) -> &PackageManifest {
        &self.manifest
    }

    /// The license the model runs under.
    pub fn license(&self) -> &LicensePayload {
        &self.license
    }

    /// The class names, by class id.
    pub fn class_names(&self) -> &[String] {
        &self.manifest.model.class_names
    }

    /// The model's logits for one encoded image (JPEG, PNG, ...).
    pub fn logits(&self, image: &[u8]) -> Result<Vec<f32>, SdkError> {
        let model = &self.manifest.model;
        let tensor = preprocess_bytes(image, DecodeLimits::default(), &model.preprocess)?;
        let [c, h, w] = tensor.shape;
        let input = Tensor::from_array(([1usize, c, h, w], tensor.data))
            .map_err(|e| SdkError::Inference(e.to_string()))?;
        let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        let outputs = session
            .run(ort::inputs![model.input_name.as_str() => input])
            .map_err(|e| SdkError::Inference(e.to_string()))?;
        let (_, logits) = outputs[model.output_name.as_str()]
            .try_extract_tensor::<f32>()
            .map_err(|e| SdkError::Inference(e.to_string()))?;
        if logits.len() != model.class_names.len() {
            return Err(SdkError::Inference(format!(
                "the model gives {} scores for the manifest's {} classes: reinstall the package",
                logits.len(),
                model.class_names.len()
            )));
        }
        Ok(logits.to_vec())
    }

    /// The `k` most probable classes of one encoded image, best first.
    pub fn predict(&self, image: &[u8], k: usize) -> Result<Vec<Prediction>, SdkError> {
        if k == 0 {
            return Err(SdkError::InvalidArgument("top-k must be at least 1".into()));
        }
        Ok(top_k(&self.logits(image)?, self.class_names(), k))
    }
}

/// Softmax of `logits`, the `k` best classes first (ties by class id).
pub fn top_k(logits: &[f32], names: &[String], k: usize) -> Vec<Prediction> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = logits.iter().map(|&l| (l - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| exp[b].total_cmp(&exp[a]).then(a.cmp(&b)));
    order
        .into_iter()
        .take(k)
        .map(|class_id| Prediction {
            class_id,
            name: names.get(class_id).cloned().unwrap_or_default(),
            score: exp[class_id] / sum,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_is_a_sorted_softmax() {
        let names: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let top = top_k(&[1.0, 3.0, 1.0], &names, 2);
        assert_eq!(top.len(), 2);
        assert_eq!((top[0].class_id, top[0].name.as_str()), (1, "b"));
        // Ties go to the lower id.
        assert_eq!(top[1].class_id, 0);
        let e = 2f32.exp();
        assert!((top[0].score - e / (e + 2.0)).abs() < 1e-6);
        let all = top_k(&[1000.0, 0.0, -1000.0], &names, 10);
        assert_eq!(all.len(), 3);
        let sum: f32 = all.iter().map(|p| p.score).sum();
        assert!((sum - 1.0).abs() < 1e-6 && all[0].score.is_finite());
    }
}
