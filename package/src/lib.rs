//! Export packages on disk (DESIGN.md section 7): the one reader every
//! program that loads a package uses (the SDK, the server, the exporter's
//! own checks and benchmarks), and the zip writer the exporter builds
//! packages with.
//!
//! A package is a zip, or the folder it was unpacked into, holding
//! `manifest.json` and the files it lists with their sha256.
//! [`Package::open`] refuses a package whose manifest is malformed, newer
//! than this code, or names a file outside the package, and one with any
//! missing, changed or unlisted file, reporting every problem at once. The
//! model's bytes are kept exactly as they were hashed, so nothing can swap
//! the model between the check and its use.
//!
//! ```no_run
//! # fn main() -> Result<(), semiclass_package::PackageError> {
//! let package = semiclass_package::Package::open("lcnet_050-cpu-x86_64.zip".as_ref())?;
//! let onnx: &[u8] = package.model_bytes()?;
//! println!("{} classes", package.manifest.model.class_names.len());
//! # Ok(()) }
//! ```
//!
//! This crate knows nothing of licenses, ONNX Runtime or tensors: a crate
//! that needs only to read or write packages stays small.

mod check;
mod read;
mod source;
mod write;

use std::io;
use std::path::PathBuf;

pub use check::read_manifest;
pub use read::Package;
pub use write::{Content, Entry, unpack, write_zip};

/// Largest `manifest.json` read (a real one is a few KB).
const MAX_MANIFEST_BYTES: u64 = 16 << 20;
/// Largest file inflated out of a zip: bounds what a crafted archive (a
/// zip bomb) can cost. ONNX's protobuf stops at 2 GiB anyway.
const MAX_ENTRY_BYTES: u64 = 4 << 30;

/// A package could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("{path}: {source}", path = path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: not a readable package zip: {reason}; give the package's .zip as exported or the folder it was unpacked into", path = path.display())]
    Zip { path: PathBuf, reason: String },
    #[error("{path}: not a valid package manifest: {reason}", path = path.display())]
    Manifest { path: PathBuf, reason: String },
    #[error(
        "{path}: not a valid package ({count}): {list}; re-export the package, or unpack the zip as shipped",
        path = path.display(),
        count = problem_count(problems),
        list = problems.join("; ")
    )]
    Invalid {
        path: PathBuf,
        problems: Vec<String>,
    },
    #[error(
        "{path}: the model is encrypted for the offline SDK and opens only there, with a license; to serve it or load it with your own ONNX Runtime code, export the package with --without-sdk",
        path = path.display()
    )]
    Encrypted { path: PathBuf },
    #[error(
        "{path}: already exists; remove it, choose another --out folder, or pass --force to replace it",
        path = path.display()
    )]
    Exists { path: PathBuf },
}

fn problem_count(problems: &[String]) -> String {
    match problems.len() {
        1 => "1 problem".into(),
        n => format!("{n} problems"),
    }
}

fn io_error(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> PackageError {
    let path = path.into();
    move |source| PackageError::Io { path, source }
}
