//! ONNX Runtime for the int8 export: the package's own library, loaded
//! once per process, running batches of preprocessed images.

use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::Tensor;
use semiclass_manifest::PreprocessSpec;
use semiclass_preprocess::{DecodeLimits, preprocess_bytes};
use std::path::{Path, PathBuf};

use super::Int8Error;

/// The process's one ONNX Runtime environment (`semiclass_onnxruntime`).
fn environment(library: &Path) -> Result<semiclass_onnxruntime::Environment, Int8Error> {
    semiclass_onnxruntime::environment(library).map_err(|e| Int8Error::Runtime {
        path: e.path,
        reason: e.reason,
    })
}

/// A model loaded in ONNX Runtime the way the server and the SDK load it
/// (all graph optimizations, so int8 runs on the fused integer kernels).
pub struct Runner {
    session: Session,
    input: String,
}

impl Runner {
    pub fn new(library: &Path, model: &[u8], threads: usize) -> Result<Runner, Int8Error> {
        let environment = environment(library)?;
        let failed = |e: String| Int8Error::Session(e);
        let session = Session::builder(&environment)
            .map_err(|e| failed(e.to_string()))?
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(|e| failed(e.to_string()))?
            .with_intra_threads(threads)
            .map_err(|e| failed(e.to_string()))?
            .commit_from_memory(model)
            .map_err(|e| failed(e.to_string()))?;
        Ok(Runner {
            session,
            input: crate::export::INPUT_NAME.to_string(),
        })
    }

    /// Runs `batch` (NCHW, `n` images) and hands each of `outputs` to `take`
    /// as a flat slice.
    pub fn run(
        &mut self,
        batch: Batch,
        outputs: &[String],
        mut take: impl FnMut(&str, &[f32]),
    ) -> Result<(), Int8Error> {
        let failed = |e: ort::Error| Int8Error::Session(e.to_string());
        let tensor = Tensor::from_array((batch.shape, batch.data)).map_err(failed)?;
        let result = self
            .session
            .run(ort::inputs![self.input.as_str() => tensor])
            .map_err(failed)?;
        for name in outputs {
            let (_, values) = result[name.as_str()]
                .try_extract_tensor::<f32>()
                .map_err(failed)?;
            take(name, values);
        }
        Ok(())
    }
}

/// Preprocessed images, back to back.
pub struct Batch {
    pub shape: [usize; 4],
    pub data: Vec<f32>,
}

/// `paths` read and preprocessed by the shared preprocessing (the one
/// path the server, the SDK and training's evaluation take).
pub fn load_batch(paths: &[&PathBuf], spec: &PreprocessSpec) -> Result<Batch, Int8Error> {
    let mut data = Vec::new();
    let mut chw = [0; 3];
    for path in paths {
        let image = |reason: String| Int8Error::Image {
            path: path.to_path_buf(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|e| image(e.to_string()))?;
        let x = preprocess_bytes(&bytes, DecodeLimits::default(), spec)
            .map_err(|e| image(e.to_string()))?;
        chw = [x.shape[0], x.shape[1], x.shape[2]];
        data.extend(x.data);
    }
    Ok(Batch {
        shape: [paths.len(), chw[0], chw[1], chw[2]],
        data,
    })
}
