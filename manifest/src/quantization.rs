//! What a package says about the numbers its model computes in: float32,
//! or int8 with how it was calibrated and what it was measured to lose.

use serde::{Deserialize, Serialize};

/// The arithmetic of the packaged graph.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// The trained weights as they are.
    #[default]
    Fp32,
    /// A statically quantized graph (QuantizeLinear/DequantizeLinear pairs
    /// around the float operators, which ONNX Runtime runs on 8-bit data).
    Int8,
}

impl Precision {
    /// Every precision, in the order the CLI lists them.
    pub const ALL: [Precision; 2] = [Precision::Fp32, Precision::Int8];

    /// The name used on the command line and in the manifest.
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Int8 => "int8",
        }
    }

    /// Parses a command-line name; `None` for an unknown one.
    pub fn parse(name: &str) -> Option<Precision> {
        Precision::ALL.into_iter().find(|p| p.as_str() == name)
    }

    /// Whether `self` is the default (kept out of fp32 manifests, so they
    /// are what they were before int8 existed).
    pub fn is_fp32(&self) -> bool {
        *self == Precision::Fp32
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How an int8 graph was made and how it compares with the float graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quantization {
    /// How weights are stored, e.g. "int8, symmetric, per output channel, 7-bit range".
    pub weights: String,
    /// How activations are stored, e.g. "uint8, asymmetric, per tensor".
    pub activations: String,
    pub calibration: Calibration,
    pub evaluation: Evaluation,
}

/// The images activation ranges were measured on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    /// Where they came from, e.g. "train.txt + train_unlabeled.txt".
    pub source: String,
    pub images: usize,
    /// How a range was chosen from what was seen, e.g. "percentile 99.999".
    pub method: String,
}

/// Both graphs on the same labeled images, none of them a calibration image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evaluation {
    /// e.g. "val.txt".
    pub source: String,
    pub images: usize,
    /// Top-1 accuracy of the float graph, 0..=1.
    pub fp32_top1: f64,
    /// Top-1 accuracy of the int8 graph, 0..=1.
    pub int8_top1: f64,
    /// Share of images on which both graphs give the same top-1 class.
    pub top1_agreement: f64,
}

impl Evaluation {
    /// Top-1 points (percent) the int8 graph loses; negative when it gains.
    pub fn drop_points(&self) -> f64 {
        (self.fp32_top1 - self.int8_top1) * 100.0
    }
}
