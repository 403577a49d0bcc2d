//! ONNX Runtime, loaded at run time from the package's `lib/` folder (ort's
//! `load-dynamic`): one library and one ORT environment per process, shared
//! by every model opened in it.

use std::path::Path;

use ort::session::Session;
use semiclass_onnxruntime::Environment as OrtEnvironment;
use semiclass_onnxruntime::device::{self, Device, DeviceError, Placement};

use crate::error::SdkError;

/// The ORT environment, loading `library` (the package's own, its hash
/// checked with the manifest) when no package loaded one before
/// (`semiclass_onnxruntime`: one per process).
fn ort_environment(library: &Path) -> Result<OrtEnvironment, SdkError> {
    semiclass_onnxruntime::environment(library).map_err(|e| SdkError::Runtime {
        path: e.path,
        reason: e.reason,
    })
}

/// A session for `model` (the verified bytes of `model_path`) on the
/// runtime `library`, on the device `placement` asks for; says which.
pub(crate) fn session(
    library: &Path,
    model_path: &Path,
    model: &[u8],
    placement: Placement,
) -> Result<(Session, Device), SdkError> {
    let environment = ort_environment(library)?;
    let options = |builder| Ok(builder);
    device::commit(&environment, options, model, placement).map_err(|e| match e {
        DeviceError::Session(reason) => SdkError::Model {
            path: model_path.to_path_buf(),
            reason,
        },
        no_gpu @ DeviceError::NoGpu { .. } => SdkError::Device(no_gpu.to_string()),
    })
}
