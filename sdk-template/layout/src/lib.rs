//! What the offline SDK puts into each package (DESIGN.md section 7), for
//! the exporter: the file layout ([`SDK_FILES`], [`package_files`]) and the
//! templates (README, examples) rendered with the model's facts
//! ([`Facts`], [`render`]).
//!
//! ```no_run
//! # fn demo(manifest: &semiclass_manifest::package::PackageManifest) -> Result<(), Box<dyn std::error::Error>> {
//! use semiclass_sdk_layout::{Facts, SdkBuild, package_files, sdk_build_dir};
//! let facts = Facts::from_manifest(manifest);
//! for file in package_files(&SdkBuild::shipping(sdk_build_dir()?), &facts)? {
//!     // write file.bytes to <package>/<file.path> (mode 0755 if file.executable)
//! }
//! # Ok(()) }
//! ```
//!
//! This crate is never linked into an SDK: it is the packaging side.

mod facts;
mod files;
mod render;

pub use facts::Facts;
pub use files::{
    LayoutError, PackageFile, SDK_FILES, SdkBuild, SdkFile, Source, TEST_HOOKS_MARKER,
    model_only_readme, package_files, sdk_build_dir,
};
pub use render::{RenderError, render};
