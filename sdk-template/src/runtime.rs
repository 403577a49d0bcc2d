//! ONNX Runtime, loaded at run time from the package's `lib/` folder (ort's
//! `load-dynamic`): one library and one ORT environment per process, shared
//! by every model opened in it.

use std::env;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ort::environment::Environment as OrtEnvironment;
use ort::session::Session;

use crate::error::SdkError;
use crate::package::Package;

/// ort allows one environment per process; the first package opened loads
/// the library, later ones share it.
static RUNTIME: Mutex<Option<OrtEnvironment>> = Mutex::new(None);

/// The runtime library of `package`: the one it ships (its hash was checked
/// with the manifest). A package that ships none (a developer's package
/// without `lib/`) falls back to `ORT_DYLIB_PATH`.
fn library(package: &Package) -> Result<PathBuf, SdkError> {
    let shipped = package.dir.join(&package.manifest.runtime.library);
    if shipped.exists() {
        return Ok(shipped);
    }
    match env::var_os("ORT_DYLIB_PATH") {
        Some(path) if !path.is_empty() => Ok(PathBuf::from(path)),
        _ => Err(SdkError::Runtime {
            path: shipped,
            reason: "the file is missing (and ORT_DYLIB_PATH is not set)".into(),
        }),
    }
}

fn ort_environment(package: &Package) -> Result<OrtEnvironment, SdkError> {
    let mut runtime = RUNTIME.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(environment) = runtime.as_ref() {
        return Ok(environment.clone());
    }
    let path = std::path::absolute(library(package)?).unwrap_or_default();
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

/// A session for `model` (the verified bytes of `model_path`).
pub(crate) fn session(
    package: &Package,
    model_path: &Path,
    model: &[u8],
) -> Result<Session, SdkError> {
    let environment = ort_environment(package)?;
    let failed = |reason: String| SdkError::Model {
        path: model_path.to_path_buf(),
        reason,
    };
    Session::builder(&environment)
        .map_err(|e| failed(e.to_string()))?
        .commit_from_memory(model)
        .map_err(|e| failed(e.to_string()))
}
