//! What the CUDA build of ONNX Runtime needs from the machine, read from the
//! build itself: its CUDA provider library's ELF NEEDED entries (the CUDA
//! libraries it links) and, where the wheel's `*.dist-info/METADATA` sits
//! beside `onnxruntime/capi` (a pip install, or `make ort-gpu`'s unpacked
//! wheel), the wheel's `cuda`/`cudnn` extras: the provider loads cuDNN with
//! dlopen, so only the metadata names its version.

use std::fs::File;
use std::path::Path;

use object::elf::FileHeader64;
use object::read::ReadCache;
use object::read::elf::{Dyn, FileHeader};
use semiclass_manifest::package::CudaNeeds;

use super::PackageError;

/// Libraries every Linux system has (glibc, libstdc++, libgcc): not what a
/// CUDA machine must add.
const BASE_SYSTEM: [&str; 8] = [
    "libc.so.6",
    "libm.so.6",
    "libdl.so.2",
    "librt.so.1",
    "libpthread.so.0",
    "libstdc++.so.6",
    "libgcc_s.so.1",
    "ld-linux-x86-64.so.2",
];

/// The needs of `provider` (the CUDA provider library in the `capi` folder),
/// recorded under the package-relative name `shipped_as`.
pub fn read(capi: &Path, provider: &Path, shipped_as: String) -> Result<CudaNeeds, PackageError> {
    let libraries: Vec<String> = needed(provider)?
        .into_iter()
        .filter(|n| !BASE_SYSTEM.contains(&n.as_str()) && !n.starts_with("libonnxruntime"))
        .collect();
    let cuda = libraries
        .iter()
        .find_map(|n| n.strip_prefix("libcudart.so."))
        .map(|v| v.split('.').next().unwrap_or(v).to_string());
    let pip = wheel_metadata(capi).map_or_else(Vec::new, |m| cuda_requirements(&m));
    let cudnn = pip
        .iter()
        .find(|r| r.starts_with("nvidia-cudnn"))
        .and_then(|r| r.split("~=").nth(1).or_else(|| r.split(">=").nth(1)))
        .map(|v| v.split('.').next().unwrap_or(v).to_string());
    Ok(CudaNeeds {
        provider: shipped_as,
        libraries,
        cuda,
        cudnn,
        pip,
    })
}

/// The NEEDED entries of the ELF shared library `path`, in link order. The
/// CUDA provider is about 280 MB: only its headers and dynamic section are
/// read.
fn needed(path: &Path) -> Result<Vec<String>, PackageError> {
    let not_elf = |reason: String| PackageError::RuntimeLibrary {
        path: path.to_path_buf(),
        reason,
    };
    let file = File::open(path).map_err(|error| PackageError::Io {
        path: path.to_path_buf(),
        error,
    })?;
    let cache = ReadCache::new(file);
    let header = FileHeader64::<object::Endianness>::parse(&cache)
        .map_err(|e| not_elf(format!("not a 64-bit ELF shared library ({e})")))?;
    let endian = header.endian().map_err(|e| not_elf(e.to_string()))?;
    let sections = header
        .sections(endian, &cache)
        .map_err(|e| not_elf(e.to_string()))?;
    let Some((entries, strings_index)) = sections
        .dynamic(endian, &cache)
        .map_err(|e| not_elf(e.to_string()))?
    else {
        return Err(not_elf("no dynamic section".into()));
    };
    let strings = sections
        .strings(endian, &cache, strings_index)
        .map_err(|e| not_elf(e.to_string()))?;
    let mut names = Vec::new();
    for entry in entries {
        if entry.tag32(endian) != Some(object::elf::DT_NEEDED) {
            continue;
        }
        let name = entry
            .val32(endian)
            .and_then(|offset| strings.get(offset).ok())
            .ok_or_else(|| not_elf("a NEEDED entry names no string".into()))?;
        names.push(String::from_utf8_lossy(name).into_owned());
    }
    Ok(names)
}

/// The METADATA of the wheel `capi` came from (`capi/../../*.dist-info`).
fn wheel_metadata(capi: &Path) -> Option<String> {
    let site = capi.parent()?.parent()?;
    std::fs::read_dir(site)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
            name.is_some_and(|n| n.starts_with("onnxruntime") && n.ends_with(".dist-info"))
        })
        .find_map(|dir| std::fs::read_to_string(dir.join("METADATA")).ok())
}

/// `Requires-Dist: nvidia-cudnn-cu13~=9.0; extra == "cudnn"` and the like:
/// the requirements of the `cuda` and `cudnn` extras.
fn cuda_requirements(metadata: &str) -> Vec<String> {
    metadata
        .lines()
        .filter_map(|l| l.strip_prefix("Requires-Dist:"))
        .filter_map(|l| l.split_once(';'))
        .filter(|(_, marker)| {
            let marker = marker.replace('\'', "\"");
            marker.contains("extra == \"cuda\"") || marker.contains("extra == \"cudnn\"")
        })
        .map(|(requirement, _)| requirement.trim().replace(' ', ""))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_extras_of_the_wheel_name_cuda_and_cudnn() {
        let metadata = "Name: onnxruntime-gpu\nRequires-Dist: numpy>=1.21.6\n\
            Requires-Dist: nvidia-cuda-runtime~=13.0; extra == \"cuda\"\n\
            Requires-Dist: sympy; extra == \"symbolic\"\n\
            Requires-Dist: nvidia-cudnn-cu13~=9.0; extra == 'cudnn'\n";
        assert_eq!(
            cuda_requirements(metadata),
            ["nvidia-cuda-runtime~=13.0", "nvidia-cudnn-cu13~=9.0"]
        );
    }

    #[test]
    fn a_file_that_is_no_library_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("libonnxruntime_providers_cuda.so");
        std::fs::write(&fake, b"not a library").unwrap();
        let err = read(dir.path(), &fake, "lib/x.so".into())
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(&fake.display().to_string()), "{err}");
        assert!(err.contains("not a 64-bit ELF"), "{err}");
    }
}
