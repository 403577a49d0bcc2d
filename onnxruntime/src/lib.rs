//! ONNX Runtime, loaded at run time from a library file (ort's
//! `load-dynamic`: the onnxruntime wheel's library, or a package's own
//! `lib/`). ONNX Runtime allows one environment per process, so the first
//! caller loads the library and every later one (another package in the
//! SDK, the exporter's int8 calibration in a test that then serves the
//! package) shares that environment.

pub mod device;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub use ort::environment::Environment;

/// The library could not be loaded (or ONNX Runtime refused to start).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{path}: cannot load ONNX Runtime: {reason}")]
pub struct LoadError {
    pub path: PathBuf,
    pub reason: String,
}

/// The environment and the library it was loaded from.
static ENVIRONMENT: Mutex<Option<(Environment, PathBuf)>> = Mutex::new(None);

/// The process's environment: loads `library` if no environment exists
/// yet, else returns the existing one (whichever library it came from).
pub fn environment(library: &Path) -> Result<Environment, LoadError> {
    let mut loaded = ENVIRONMENT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((environment, _)) = loaded.as_ref() {
        return Ok(environment.clone());
    }
    let path = std::path::absolute(library).unwrap_or_else(|_| library.to_path_buf());
    let failed = |reason: String| LoadError {
        path: path.clone(),
        reason,
    };
    let environment = ort::init_from(&path)
        .map_err(|e| failed(e.to_string()))?
        .with_name("semiclass")
        .build()
        .map_err(|e| failed(e.to_string()))?;
    *loaded = Some((environment.clone(), path));
    Ok(environment)
}

/// The environment if one was loaded.
pub fn loaded() -> Option<Environment> {
    let loaded = ENVIRONMENT.lock().unwrap_or_else(|p| p.into_inner());
    loaded.as_ref().map(|(environment, _)| environment.clone())
}

/// The library the environment was loaded from (absolute), if any: which
/// build (CPU or CUDA) this process runs.
pub fn loaded_library() -> Option<PathBuf> {
    let loaded = ENVIRONMENT.lock().unwrap_or_else(|p| p.into_inner());
    loaded.as_ref().map(|(_, path)| path.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_library_is_an_error_naming_it_and_nothing_is_kept() {
        let err = environment(Path::new("/nonexistent/libonnxruntime.so")).unwrap_err();
        assert_eq!(err.path, Path::new("/nonexistent/libonnxruntime.so"));
        assert!(
            err.to_string()
                .starts_with("/nonexistent/libonnxruntime.so: cannot load")
        );
        assert!(loaded().is_none());
    }
}
