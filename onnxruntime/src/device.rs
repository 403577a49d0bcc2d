//! Where a package's model runs. A cuda-x86_64 package runs on ONNX
//! Runtime's CUDA execution provider or, when the GPU cannot be used, fails
//! with one error that names what is missing (read from the package's
//! manifest: the provider's NEEDED libraries, CUDA and cuDNN versions);
//! it runs on the CPU instead only when the user asked for that
//! (`--allow-cpu-fallback`), and the caller logs that it did. Never
//! silently: a CUDA package quietly served on the CPU is a latency bug
//! nobody sees until production.

use std::path::{Path, PathBuf};

use ort::ep::{CUDA, ExecutionProvider};
use ort::session::Session;
use ort::session::builder::SessionBuilder;
use semiclass_manifest::package::CudaNeeds;

use crate::{Environment, loaded_library};

/// The CUDA provider library, beside the main library in a CUDA build.
pub const CUDA_PROVIDERS: &str = "libonnxruntime_providers_cuda.so";

/// The flag (server and `infer`) that allows a CUDA package on the CPU.
pub const FALLBACK_FLAG: &str = "--allow-cpu-fallback";
/// The same for the SDK's C library, which has no command line.
pub const FALLBACK_ENV: &str = "SEMICLASS_ALLOW_CPU_FALLBACK";

/// Where a session runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Device {
    Cpu,
    Cuda,
    /// A CUDA package on the CPU, as allowed; why the GPU was not used.
    CpuFallback(String),
}

/// What the package asks for and what the user allows.
#[derive(Debug, Clone, Copy)]
pub struct Placement<'a> {
    /// `Some` for a CUDA package: what its runtime needs.
    pub cuda: Option<&'a CudaNeeds>,
    pub allow_cpu_fallback: bool,
}

/// A session could not be made.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DeviceError {
    #[error("{0}")]
    Session(String),
    #[error(
        "{provider}: this CUDA package cannot use a GPU here: {diagnosis}. It needs an NVIDIA GPU with its driver (libcuda.so.1) and {versions} on the library path{install}; or pass {FALLBACK_FLAG} ({FALLBACK_ENV}=1 for the C library) to run it on the CPU, slower; or use the cpu-x86_64 package",
        provider = provider.display()
    )]
    NoGpu {
        provider: PathBuf,
        diagnosis: String,
        versions: String,
        install: String,
    },
}

/// Builds a session for `model` with the options `configure` sets, on the
/// device `placement` asks for: see the module's doc.
pub fn commit(
    environment: &Environment,
    configure: impl Fn(SessionBuilder) -> ort::Result<SessionBuilder>,
    model: &[u8],
    placement: Placement,
) -> Result<(Session, Device), DeviceError> {
    let session_err = |e: ort::Error| DeviceError::Session(e.to_string());
    let builder = || Session::builder(environment).and_then(&configure);
    let Some(needs) = placement.cuda else {
        let session = builder().map_err(session_err)?.commit_from_memory(model);
        return Ok((session.map_err(session_err)?, Device::Cpu));
    };
    let why = match on_cuda(builder().map_err(session_err)?, model) {
        Ok(session) => return Ok((session, Device::Cuda)),
        Err(why) => why,
    };
    let error = no_gpu(needs, why);
    if !placement.allow_cpu_fallback {
        return Err(error);
    }
    let session = builder().map_err(session_err)?.commit_from_memory(model);
    Ok((
        session.map_err(session_err)?,
        Device::CpuFallback(error.to_string()),
    ))
}

/// The session on the CUDA execution provider, or why not.
fn on_cuda(mut builder: SessionBuilder, model: &[u8]) -> Result<Session, String> {
    let library = loaded_library().unwrap_or_default();
    if !provider_of(&library).exists() {
        return Err(format!(
            "this process loaded ONNX Runtime from {}, a CPU build (no {CUDA_PROVIDERS} beside it): load the package's own lib/ runtime (leave out --onnxruntime and ORT_DYLIB_PATH, or point them there)",
            library.display()
        ));
    }
    CUDA::default()
        .register(&mut builder)
        .map_err(|e| e.to_string())?;
    // A machine with the libraries but no usable GPU fails here, when the
    // provider first asks the driver for a device.
    builder.commit_from_memory(model).map_err(|e| e.to_string())
}

fn provider_of(library: &Path) -> PathBuf {
    library
        .parent()
        .unwrap_or(Path::new(""))
        .join(CUDA_PROVIDERS)
}

/// The error for a CUDA package whose provider would not start: which of
/// the libraries it needs this machine lacks (each tried as ONNX Runtime
/// would, by name on the library path), and ONNX Runtime's own reason.
fn no_gpu(needs: &CudaNeeds, why: String) -> DeviceError {
    // ONNX Runtime's messages end in a newline: keep the error one line.
    let why = why.split_whitespace().collect::<Vec<_>>().join(" ");
    let missing: Vec<&str> = needs
        .libraries
        .iter()
        .map(String::as_str)
        .filter(|name| !can_load(name))
        .collect();
    let diagnosis = match missing.as_slice() {
        [] => format!("ONNX Runtime: {why}"),
        names => format!("{} not found (ONNX Runtime: {why})", names.join(", ")),
    };
    let install = match needs.pip.as_slice() {
        [] => String::new(),
        pip => format!(
            " (from PyPI: pip install {}, then add the nvidia/*/lib folders to LD_LIBRARY_PATH)",
            pip.iter()
                .map(|p| format!("'{p}'"))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    };
    DeviceError::NoGpu {
        provider: provider_of(&loaded_library().unwrap_or_default()),
        diagnosis,
        versions: needs.versions(),
        install,
    }
}

/// Whether the dynamic loader finds `name` (as ONNX Runtime's dlopen of the
/// provider would look it up).
fn can_load(name: &str) -> bool {
    // SAFETY: loading a CUDA library runs its initialisers, as ONNX
    // Runtime's own load of the provider would a moment earlier; the
    // handle is closed again at once.
    unsafe { libloading::Library::new(name) }.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_names_the_missing_libraries_the_versions_and_both_ways_out() {
        let needs = CudaNeeds {
            provider: "lib/libonnxruntime_providers_cuda.so".into(),
            libraries: vec!["libc.so.6".into(), "libsemiclass-absent.so.13".into()],
            cuda: Some("13".into()),
            cudnn: Some("9".into()),
            pip: vec!["nvidia-cudnn-cu13~=9.0".into()],
        };
        let err = no_gpu(&needs, "dlopen failed".into()).to_string();
        assert!(err.contains("libsemiclass-absent.so.13 not found"), "{err}");
        assert!(!err.contains("libc.so.6 not found"), "{err}");
        assert!(err.contains("CUDA 13 and cuDNN 9"), "{err}");
        assert!(
            err.contains("pip install 'nvidia-cudnn-cu13~=9.0'"),
            "{err}"
        );
        assert!(err.contains("ONNX Runtime: dlopen failed"), "{err}");
        assert!(
            err.contains(FALLBACK_FLAG) && err.contains(FALLBACK_ENV),
            "{err}"
        );
    }
}
