//! ONNX Runtime, loaded at run time from the package's `lib/` folder (ort's
//! `load-dynamic`): one library and one ORT environment per process, shared
//! by every model opened in it.

use std::path::Path;
use std::sync::Mutex;

use ort::environment::Environment as OrtEnvironment;
use ort::session::Session;

use crate::error::SdkError;

/// ort allows one environment per process; the first package opened loads
/// the library, later ones share it.
static RUNTIME: Mutex<Option<OrtEnvironment>> = Mutex::new(None);

/// The ORT environment, loading `library` (the package's own, its hash
/// checked with the manifest) when no package loaded one before.
fn ort_environment(library: &Path) -> Result<OrtEnvironment, SdkError> {
    let mut runtime = RUNTIME.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(environment) = runtime.as_ref() {
        return Ok(environment.clone());
    }
    let path = std::path::absolute(library).unwrap_or_else(|_| library.to_path_buf());
    let failed = |reason: String| SdkError::Runtime {
        path: path.clone(),
        reason,
    };
    let environment = ort::init_from(&path)
        .map_err(|e| failed(e.to_string()))?
        .with_name("semiclass-sdk")
        .build()
        .map_err(|e| failed(e.to_string()))?;
    *runtime = Some(environment.clone());
    Ok(environment)
}

/// A session for `model` (the verified bytes of `model_path`) on the
/// runtime `library`.
pub(crate) fn session(
    library: &Path,
    model_path: &Path,
    model: &[u8],
) -> Result<Session, SdkError> {
    let environment = ort_environment(library)?;
    let failed = |reason: String| SdkError::Model {
        path: model_path.to_path_buf(),
        reason,
    };
    Session::builder(&environment)
        .map_err(|e| failed(e.to_string()))?
        .commit_from_memory(model)
        .map_err(|e| failed(e.to_string()))
}
