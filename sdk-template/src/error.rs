//! Why the SDK refused or failed, with a status code for the C ABI.

use std::path::PathBuf;

use semiclass_licensing::{CheckError, FingerprintError, KeyringError, LicenseError};
use semiclass_preprocess::DecodeError;

/// Status codes of the C ABI (`SEMICLASS_*` in `semiclass_sdk.h`).
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok = 0,
    /// A null pointer, a zero top-k, text that is not UTF-8.
    InvalidArgument = 1,
    /// The package's files are missing, changed or unreadable.
    Package = 2,
    /// No valid license for this package on this machine.
    License = 3,
    /// The image could not be decoded.
    Image = 4,
    /// ONNX Runtime could not load the library or the model, or run it.
    Runtime = 5,
    /// A bug in the SDK (a caught panic).
    Internal = 6,
}

/// An SDK failure; every message says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum SdkError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error(transparent)]
    Package(#[from] semiclass_package::PackageError),
    #[error(transparent)]
    Check(#[from] CheckError),
    #[error(transparent)]
    License(#[from] LicenseError),
    #[error("this SDK's built-in license keys are broken ({0}): reinstall the package")]
    Keyring(#[from] KeyringError),
    #[error(
        "package id {0:?} cannot name an activation folder: pass one explicitly (--activation-dir)"
    )]
    PackageId(String),
    #[error(
        "cannot choose an activation folder: neither XDG_DATA_HOME nor HOME is set; pass one explicitly (--activation-dir)"
    )]
    NoActivationHome,
    #[error("cannot read image: {0}")]
    Image(#[from] DecodeError),
    #[error("{path}: cannot load ONNX Runtime: {reason}: reinstall the package", path = path.display())]
    Runtime { path: PathBuf, reason: String },
    #[error("{path}: ONNX Runtime cannot load the model: {reason}: reinstall the package", path = path.display())]
    Model { path: PathBuf, reason: String },
    #[error("inference failed: {0}")]
    Inference(String),
    /// A CUDA package whose GPU cannot be used: the whole explanation.
    #[error("{0}")]
    Device(String),
}

impl From<FingerprintError> for SdkError {
    fn from(err: FingerprintError) -> SdkError {
        SdkError::License(err.into())
    }
}

impl SdkError {
    /// The C ABI status of this error.
    pub fn status(&self) -> Status {
        match self {
            SdkError::InvalidArgument(_) => Status::InvalidArgument,
            SdkError::Check(CheckError::License(_)) | SdkError::License(_) => Status::License,
            SdkError::Package(_)
            | SdkError::Check(_)
            | SdkError::PackageId(_)
            | SdkError::Keyring(_) => Status::Package,
            SdkError::NoActivationHome => Status::License,
            SdkError::Image(_) => Status::Image,
            SdkError::Runtime { .. }
            | SdkError::Model { .. }
            | SdkError::Inference(_)
            | SdkError::Device(_) => Status::Runtime,
        }
    }
}
