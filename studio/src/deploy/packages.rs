//! The packages the studio exported: `STUDIO/packages/<job folder>/*.zip`,
//! one folder per export, so that two exports never replace each other.

use std::path::{Path, PathBuf};

use semiclass_manifest::package::PackageManifest;
use semiclass_package::read_manifest;

use crate::error::StudioError;
use crate::state::Studio;

/// A package as listed: its folder's name identifies it in URLs.
#[derive(Debug)]
pub struct PackageEntry {
    pub name: String,
    pub zip: PathBuf,
    /// The manifest, or why the package cannot be described.
    pub manifest: Result<PackageManifest, String>,
}

pub fn packages_dir(studio: &Studio) -> PathBuf {
    studio.data_dir.join("packages")
}

/// Every exported package, the newest first (folder names sort by time).
pub fn list(studio: &Studio) -> Vec<PackageEntry> {
    let Ok(folders) = std::fs::read_dir(packages_dir(studio)) else {
        return Vec::new();
    };
    let mut entries: Vec<PackageEntry> = folders
        .flatten()
        .filter_map(|folder| {
            let name = folder.file_name().to_str()?.to_string();
            let zip = zip_in(&folder.path())?;
            // Described, not loaded: serving opens it with every file verified.
            let manifest = read_manifest(&zip).map_err(|e| e.to_string());
            Some(PackageEntry {
                name,
                zip,
                manifest,
            })
        })
        .collect();
    entries.sort_by(|a, b| b.name.cmp(&a.name));
    entries
}

/// The one zip an export wrote into `folder` (none while it runs).
fn zip_in(folder: &Path) -> Option<PathBuf> {
    std::fs::read_dir(folder)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "zip") && p.is_file())
}

/// The package named `name`, found among the listed ones: a name from a
/// request never becomes a path of its own.
pub fn find(studio: &Studio, name: &str) -> Result<PackageEntry, StudioError> {
    list(studio)
        .into_iter()
        .find(|p| p.name == name)
        .ok_or_else(|| {
            StudioError::NotFound(format!(
                "no package '{name}'; the Deploy page lists the exported ones"
            ))
        })
}
