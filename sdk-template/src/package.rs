//! A package folder before it is verified, where its activation lives, and
//! the environment a license is checked against.

use std::env;
use std::path::{Component, Path, PathBuf};

use semiclass_licensing::{ActivationDir, Environment};
use semiclass_manifest::package::PackageManifest;

use crate::error::SdkError;

/// Below the user's data folder: `<data>/semiclass/activations/<package id>`.
pub const ACTIVATIONS_DIR: &str = "semiclass/activations";

/// A package folder and its manifest, read but not yet trusted: enough to
/// start an activation or describe the package. Only [`crate::Model::open`]
/// checks the files and the license.
#[derive(Debug, Clone)]
pub struct Package {
    pub dir: PathBuf,
    pub manifest: PackageManifest,
}

impl Package {
    /// Reads the manifest of the package in `dir`.
    pub fn read(dir: &Path) -> Result<Package, SdkError> {
        // ONNX Runtime resolves relative library paths against the program's
        // folder, not the working directory: keep every path absolute.
        let dir = std::path::absolute(dir).map_err(|source| {
            SdkError::Package(semiclass_package::PackageError::Io {
                path: dir.to_path_buf(),
                source,
            })
        })?;
        let manifest = semiclass_package::read_manifest(&dir)?;
        Ok(Package { dir, manifest })
    }

    /// This package's activation folder in the user's data folder
    /// (`$XDG_DATA_HOME`, else `~/.local/share`): per user and machine, and
    /// writable even when the package is installed read-only.
    pub fn default_activation(&self) -> Result<ActivationDir, SdkError> {
        let id = &self.manifest.package_id;
        let mut parts = Path::new(id).components();
        let plain = matches!(
            (parts.next(), parts.next()),
            (Some(Component::Normal(_)), None)
        );
        if !plain {
            return Err(SdkError::PackageId(id.clone()));
        }
        Ok(ActivationDir::new(
            data_home()?.join(ACTIVATIONS_DIR).join(id),
        ))
    }
}

fn data_home() -> Result<PathBuf, SdkError> {
    let set = |name| {
        env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    set("XDG_DATA_HOME")
        .filter(|p| p.is_absolute())
        .or_else(|| set("HOME").map(|home| home.join(".local/share")))
        .ok_or(SdkError::NoActivationHome)
}

/// The environment licenses are checked against: the keys compiled into
/// this build, this machine's fingerprint and the system clock (replaced
/// by the test hooks in a `test-hooks` build only).
pub fn environment() -> Result<Environment, SdkError> {
    #[allow(unused_mut)]
    let mut env = Environment::system()?;
    #[cfg(feature = "test-hooks")]
    crate::hooks::apply(&mut env)?;
    Ok(env)
}
