//! The ONNX Runtime shipped in a package: the shared libraries of the
//! `onnxruntime` (CPU) or `onnxruntime-gpu` (CUDA) wheel's `capi/` folder,
//! which `ort`'s `load-dynamic` feature loads at run time.

use std::path::{Path, PathBuf};

use semiclass_manifest::package::{CudaNeeds, Target};

use super::{LIB_DIR, PackageError, cuda_needs};

/// Environment variables naming each target's `capi/` folder.
pub const CPU_DIR_ENV: &str = "SEMICLASS_ORT_CPU_DIR";
pub const CUDA_DIR_ENV: &str = "SEMICLASS_ORT_CUDA_DIR";
/// Set by the Makefile (and used by `ort`): the CPU library, whose folder is
/// the CPU target's last resort.
const ORT_DYLIB_ENV: &str = "ORT_DYLIB_PATH";

const MAIN_PREFIX: &str = "libonnxruntime.so.";
const SHARED_PROVIDERS: &str = "libonnxruntime_providers_shared.so";
const CUDA_PROVIDERS: &str = "libonnxruntime_providers_cuda.so";

/// The runtime files found for a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runtime {
    /// ONNX Runtime version, from the library's file name (`1.32.0`).
    pub version: String,
    /// The main library, `libonnxruntime.so.<version>`.
    pub library: PathBuf,
    /// Provider libraries the target needs besides the main one.
    pub providers: Vec<PathBuf>,
    /// What the CUDA build needs from the machine (CUDA target only).
    pub cuda: Option<CudaNeeds>,
}

impl Runtime {
    /// Every file to ship.
    pub fn files(&self) -> impl Iterator<Item = &PathBuf> {
        std::iter::once(&self.library).chain(&self.providers)
    }
}

/// The folder to take `target`'s runtime from: `dir` if given, else the
/// target's environment variable, else (CPU only) the folder of `ORT_DYLIB_PATH`.
pub fn runtime_dir(target: Target, dir: Option<&Path>) -> Result<PathBuf, PackageError> {
    if let Some(dir) = dir {
        return Ok(dir.to_path_buf());
    }
    let env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    let found = match target {
        Target::CpuX86_64 => env(CPU_DIR_ENV).map(PathBuf::from).or_else(|| {
            env(ORT_DYLIB_ENV).and_then(|p| Path::new(&p).parent().map(Path::to_path_buf))
        }),
        Target::CudaX86_64 => env(CUDA_DIR_ENV).map(PathBuf::from),
    };
    found.ok_or(PackageError::NoRuntime {
        target,
        help: help(target),
    })
}

/// Finds `target`'s libraries in `dir` (a wheel's `onnxruntime/capi`).
pub fn find_runtime(target: Target, dir: &Path) -> Result<Runtime, PackageError> {
    let names = list(dir)?;
    let missing = |what: String| PackageError::RuntimeFiles {
        dir: dir.to_path_buf(),
        target,
        problem: what,
        help: help(target),
    };
    let mains: Vec<&String> = names.iter().filter(|n| is_main(n)).collect();
    let main = match mains.as_slice() {
        [one] => *one,
        [] => return Err(missing(format!("no {MAIN_PREFIX}<version>"))),
        many => return Err(missing(format!("several ONNX Runtime versions: {many:?}"))),
    };
    let has = |name: &str| names.iter().any(|n| n == name);
    let providers = match target {
        Target::CpuX86_64 if has(CUDA_PROVIDERS) => {
            return Err(missing(format!(
                "{CUDA_PROVIDERS} present: this is the onnxruntime-gpu build, not the CPU one"
            )));
        }
        Target::CpuX86_64 => vec![],
        Target::CudaX86_64 => {
            for needed in [CUDA_PROVIDERS, SHARED_PROVIDERS] {
                if !has(needed) {
                    return Err(missing(format!("no {needed}")));
                }
            }
            vec![dir.join(CUDA_PROVIDERS), dir.join(SHARED_PROVIDERS)]
        }
    };
    let cuda = match target {
        Target::CpuX86_64 => None,
        Target::CudaX86_64 => {
            let shipped_as = format!("{LIB_DIR}/{CUDA_PROVIDERS}");
            Some(cuda_needs::read(
                dir,
                &dir.join(CUDA_PROVIDERS),
                shipped_as,
            )?)
        }
    };
    Ok(Runtime {
        version: main[MAIN_PREFIX.len()..].to_string(),
        library: dir.join(main),
        providers,
        cuda,
    })
}

/// `libonnxruntime.so.1.32.0`, not `libonnxruntime.so.1` (a link) or others.
fn is_main(name: &str) -> bool {
    name.strip_prefix(MAIN_PREFIX).is_some_and(|v| {
        v.split('.').count() == 3 && v.split('.').all(|p| p.parse::<u32>().is_ok())
    })
}

fn list(dir: &Path) -> Result<Vec<String>, PackageError> {
    let read = std::fs::read_dir(dir).map_err(|error| PackageError::Io {
        path: dir.to_path_buf(),
        error,
    })?;
    Ok(read
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect())
}

/// How to get the runtime files of `target`.
fn help(target: Target) -> String {
    match target {
        Target::CpuX86_64 => format!(
            "`pip install onnxruntime` and pass its folder with --runtime-dir \
             (<venv>/lib/python3.*/site-packages/onnxruntime/capi) or set {CPU_DIR_ENV}"
        ),
        Target::CudaX86_64 => format!(
            "the CUDA target ships the onnxruntime-gpu build: `make ort-gpu` fetches it into \
             target/ort-gpu and sets {CUDA_DIR_ENV} for make's commands; elsewhere \
             `pip download onnxruntime-gpu --no-deps -d DIR`, unzip the wheel (it is a zip), and \
             pass its onnxruntime/capi folder with --runtime-dir or set {CUDA_DIR_ENV}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(names: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for name in names {
            std::fs::write(dir.path().join(name), name.as_bytes()).unwrap();
        }
        dir
    }

    #[test]
    fn cpu_takes_the_versioned_library_only() {
        let dir = dir_with(&["libonnxruntime.so.1.32.0", SHARED_PROVIDERS, "__init__.py"]);
        let rt = find_runtime(Target::CpuX86_64, dir.path()).unwrap();
        assert_eq!(rt.version, "1.32.0");
        assert_eq!(rt.files().count(), 1);
    }

    #[test]
    fn cuda_needs_the_gpu_build_and_says_how_to_get_it() {
        let cpu = dir_with(&["libonnxruntime.so.1.32.0", SHARED_PROVIDERS]);
        let err = find_runtime(Target::CudaX86_64, cpu.path())
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(&cpu.path().display().to_string()), "{err}");
        assert!(err.contains("no libonnxruntime_providers_cuda.so"), "{err}");
        assert!(err.contains("pip download onnxruntime-gpu"), "{err}");
        let gpu = dir_with(&["libonnxruntime.so.1.20.1", SHARED_PROVIDERS, CUDA_PROVIDERS]);
        // A provider that is no library cannot say what it needs.
        let err = find_runtime(Target::CudaX86_64, gpu.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a 64-bit ELF"), "{err}");
        let err = find_runtime(Target::CpuX86_64, gpu.path())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("onnxruntime-gpu build, not the CPU one"),
            "{err}"
        );
    }

    #[test]
    fn the_gpu_wheel_says_which_cuda_and_cudnn_it_needs() {
        let rt = find_runtime(Target::CudaX86_64, &crate::testing::cuda_runtime_dir()).unwrap();
        let needs = rt.cuda.unwrap();
        assert_eq!(needs.provider, "lib/libonnxruntime_providers_cuda.so");
        // The NVIDIA driver and the CUDA runtime, never glibc or ORT itself.
        for lib in ["libcuda.so.1", "libcudart.so.13", "libcublasLt.so.13"] {
            assert!(needs.libraries.iter().any(|l| l == lib), "{needs:?}");
        }
        assert!(!needs.libraries.iter().any(|l| l.starts_with("libc.")));
        assert_eq!(needs.versions(), "CUDA 13 and cuDNN 9");
        assert!(needs.pip.iter().any(|r| r == "nvidia-cudnn-cu13~=9.0"));
    }

    #[test]
    fn an_empty_or_missing_folder_is_explained() {
        let empty = dir_with(&[]);
        let err = find_runtime(Target::CpuX86_64, empty.path())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no libonnxruntime.so.<version>")
                && err.contains("pip install onnxruntime"),
            "{err}"
        );
        let gone = empty.path().join("gone");
        let err = find_runtime(Target::CpuX86_64, &gone)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(&gone.display().to_string()), "{err}");
    }
}
