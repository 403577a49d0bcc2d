//! The int8 export: the checkpoint's float graph is calibrated on images
//! (ONNX Runtime, the package's own library), rewritten in QDQ form
//! ([`crate::quantize`]), and both graphs are evaluated on labeled images
//! none of which was a calibration image. An int8 model that loses more
//! than the allowed top-1 points is refused unless forced.

mod calibrate;
mod evaluate;
mod session;

use std::path::{Path, PathBuf};

use semiclass_manifest::quantization::{Calibration, Evaluation, Quantization};

use crate::OnnxModel;
use crate::export::{ExportError, RecordedModel, record_checkpoint};
use crate::quantize::{self, Observations, RangeMethod, SCHEME, Scheme};
pub use evaluate::Scores;

/// Intra-op threads of the calibration and evaluation sessions.
const THREADS: usize = 2;

/// The range method int8 exports use unless told otherwise (chosen by
/// measurement: BENCHMARKS.md, "int8 export").
pub const DEFAULT_METHOD: RangeMethod = RangeMethod::Percentile(99.999);

/// The images of an int8 export.
#[derive(Debug, Clone)]
pub struct Int8Images {
    pub calibration: Vec<PathBuf>,
    /// How the calibration images are named in the manifest.
    pub calibration_source: String,
    /// Labeled images (path, class id) neither graph saw in calibration.
    pub evaluation: Vec<(PathBuf, usize)>,
    pub evaluation_source: String,
}

/// What an int8 export is asked to do.
#[derive(Debug, Clone)]
pub struct Int8Request {
    pub images: Int8Images,
    pub method: RangeMethod,
    /// Top-1 points the int8 graph may lose against the float graph.
    pub max_drop_points: f64,
    /// Package it even when it loses more.
    pub force: bool,
}

/// Why an int8 model could not be made.
#[derive(Debug, thiserror::Error)]
pub enum Int8Error {
    #[error(transparent)]
    Export(#[from] ExportError),
    #[error("{path}: ONNX Runtime could not be loaded: {reason}")]
    Runtime { path: PathBuf, reason: String },
    #[error("ONNX Runtime: {0}")]
    Session(String),
    #[error("{path}: {reason}")]
    Image { path: PathBuf, reason: String },
    #[error("no {what} images: {help}")]
    NoImages { what: &'static str, help: String },
    #[error(
        "the int8 model loses {drop:.2} top-1 points on {images} {source_name} images (fp32 {fp32:.2}%, int8 {int8:.2}%), more than the {allowed} allowed; pass --force to package it anyway, or try another --calibration-method"
    )]
    TooLossy {
        drop: f64,
        images: usize,
        source_name: String,
        fp32: f64,
        int8: f64,
        allowed: f64,
    },
}

/// A checkpoint's float graph with what calibration saw of it: int8 models
/// by any range method can be made from it without running images again.
pub struct Calibrated {
    pub model: RecordedModel,
    pub plan: quantize::Plan,
    pub observations: Observations,
    pub scheme: Scheme,
}

impl Calibrated {
    /// Records `checkpoint` and runs the calibration `images` through it.
    pub fn measure(
        checkpoint: &Path,
        library: &Path,
        images: &[PathBuf],
        scheme: Scheme,
    ) -> Result<Calibrated, Int8Error> {
        if images.is_empty() {
            return Err(Int8Error::NoImages {
                what: "calibration",
                help: "activation ranges are measured on images; give a list with some".into(),
            });
        }
        let model = record_checkpoint(checkpoint)?;
        let plan = quantize::plan_for(&model, scheme);
        let observing = quantize::observing_model(&model, &plan);
        let spec = &model.meta.preprocess;
        let observations = calibrate::observe(library, &observing, &plan.measured(), images, spec)?;
        Ok(Calibrated {
            model,
            plan,
            observations,
            scheme,
        })
    }

    /// The float model file.
    pub fn fp32_bytes(&self) -> Vec<u8> {
        use prost::Message;
        crate::emit::model_proto(self.model.graph.clone(), &self.model.info).encode_to_vec()
    }

    /// The int8 model file with ranges by `method`.
    pub fn int8_bytes(&self, method: RangeMethod) -> Vec<u8> {
        let ranges = self.observations.ranges(method);
        quantize::int8_model(&self.model, &self.plan, &ranges, self.scheme)
    }

    /// Both graphs on `images`.
    pub fn compare(
        &self,
        library: &Path,
        int8: &[u8],
        images: &[(PathBuf, usize)],
    ) -> Result<Scores, Int8Error> {
        let spec = &self.model.meta.preprocess;
        evaluate::compare(library, (&self.fp32_bytes(), int8), images, spec)
    }
}

/// The int8 model of `checkpoint`, calibrated and evaluated as `req` says,
/// on the ONNX Runtime `library` the package ships.
pub fn export_int8(
    checkpoint: &Path,
    library: &Path,
    req: &Int8Request,
) -> Result<OnnxModel, Int8Error> {
    let images = &req.images;
    if images.evaluation.is_empty() {
        return Err(Int8Error::NoImages {
            what: "evaluation",
            help: format!(
                "every {} image was used for calibration; calibrate on other images",
                images.evaluation_source
            ),
        });
    }
    let calibrated = Calibrated::measure(checkpoint, library, &images.calibration, SCHEME)?;
    let bytes = calibrated.int8_bytes(req.method);
    let scores = calibrated.compare(library, &bytes, &images.evaluation)?;
    let quantization = quantization(req, &scores);
    refuse_if_lossy(req, &quantization.evaluation)?;
    let mut model = calibrated.model.into_model();
    model.bytes = bytes;
    model.quantization = Some(quantization);
    Ok(model)
}

fn quantization(req: &Int8Request, scores: &Scores) -> Quantization {
    let share = |n: usize| n as f64 / scores.images.max(1) as f64;
    Quantization {
        weights: quantize::describe_weights(SCHEME),
        activations: quantize::describe_activations(SCHEME),
        calibration: Calibration {
            source: req.images.calibration_source.clone(),
            images: req.images.calibration.len(),
            method: req.method.to_string(),
        },
        evaluation: Evaluation {
            source: req.images.evaluation_source.clone(),
            images: scores.images,
            fp32_top1: share(scores.fp32_correct),
            int8_top1: share(scores.int8_correct),
            top1_agreement: share(scores.agreeing),
        },
    }
}

fn refuse_if_lossy(req: &Int8Request, e: &Evaluation) -> Result<(), Int8Error> {
    if e.drop_points() <= req.max_drop_points || req.force {
        return Ok(());
    }
    Err(Int8Error::TooLossy {
        drop: e.drop_points(),
        images: e.images,
        source_name: e.source.clone(),
        fp32: e.fp32_top1 * 100.0,
        int8: e.int8_top1 * 100.0,
        allowed: req.max_drop_points,
    })
}

#[cfg(test)]
pub(crate) mod tests;
