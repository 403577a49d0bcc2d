//! int8 graphs in QDQ form, written natively like the float graph.
//!
//! Scheme, chosen for ONNX Runtime on x86-64 CPUs and measured on ours
//! (BENCHMARKS.md, "int8 export"):
//! - weights int8, symmetric, one scale per output channel (Conv axis 0,
//!   MatMul axis 1), biases int32 in the product's units;
//! - activations uint8, asymmetric, one scale per tensor, ranges calibrated
//!   on images through the shared preprocessing ([`ranges`]). uint8 because
//!   ONNX Runtime's x86 integer kernels multiply uint8 activations by int8
//!   weights (U8S8), and because a range that starts at 0 lets the
//!   QuantizeLinear do the Relu's clamping, so the Relu disappears;
//! - weights limited to 7 bits (`-64..=64`, [`WEIGHT_LIMIT`]): without
//!   AVX-512 VNNI, the U8S8 kernel adds pairs of u8 x s8 products in a
//!   saturating int16 (`vpmaddubsw`), and 255 x 127 x 2 overflows it;
//!   255 x 64 x 2 does not. ONNX Runtime's own tool calls this
//!   `reduce_range` and recommends it for CPUs without VNNI; a package may
//!   run on any x86-64 CPU, so the export is safe on all of them.

pub mod entropy;
pub mod params;
pub mod plan;
pub mod ranges;
pub mod rewrite;

use std::collections::HashMap;

use prost::Message;

use crate::emit::{add_outputs, model_proto};
use crate::export::RecordedModel;
pub use params::ActivationType;
pub use plan::{Plan, plan};
pub use ranges::{Observations, RangeMethod};
pub use rewrite::{Scheme, quantized_graph};

/// The weight range of [`SCHEME`] (see the module doc).
pub const WEIGHT_LIMIT: i8 = 64;

/// What int8 exports use (see the module doc).
pub const SCHEME: Scheme = Scheme {
    activations: ActivationType::U8Asymmetric,
    weight_limit: WEIGHT_LIMIT,
};

/// The plan of `model` under `scheme`.
pub fn plan_for(model: &RecordedModel, scheme: Scheme) -> Plan {
    plan(
        &model.graph,
        scheme.activations == ActivationType::U8Asymmetric,
    )
}

/// The float model with every value calibration measures as an output
/// (but the graph input, which the caller has).
pub fn observing_model(model: &RecordedModel, plan: &Plan) -> Vec<u8> {
    let mut proto = model_proto(model.graph.clone(), &model.info);
    let mut measured = plan.measured();
    measured.retain(|name| *name != model.graph.input);
    add_outputs(&mut proto, &measured);
    proto.encode_to_vec()
}

/// The int8 model file of `model` with the measured `ranges`.
pub fn int8_model(
    model: &RecordedModel,
    plan: &Plan,
    ranges: &HashMap<String, (f32, f32)>,
    scheme: Scheme,
) -> Vec<u8> {
    let graph = quantized_graph(&model.graph, plan, ranges, scheme);
    model_proto(graph, &model.info).encode_to_vec()
}

/// How the weights of [`SCHEME`] are described in the manifest.
pub fn describe_weights(scheme: Scheme) -> String {
    let bits = if scheme.weight_limit == 127 { 8 } else { 7 };
    format!("int8, symmetric, per output channel, {bits}-bit range")
}

/// How the activations of [`SCHEME`] are described in the manifest.
pub fn describe_activations(scheme: Scheme) -> String {
    match scheme.activations {
        ActivationType::U8Asymmetric => "uint8, asymmetric, per tensor".into(),
        ActivationType::I8Symmetric => "int8, symmetric, per tensor".into(),
    }
}
