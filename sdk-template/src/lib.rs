//! The offline SDK of a semiclass package (DESIGN.md section 7): open a
//! package folder, check its files and license, load its ONNX model with
//! the ONNX Runtime shipped in the package, and classify images.
//!
//! The same code serves three front ends: the Rust API here ([`Model`]),
//! the C ABI of `lib/libsemiclass_sdk.so` (`include/semiclass_sdk.h`,
//! module `ffi`) and the `infer` CLI. It never links libtorch, and it
//! preprocesses images with `semiclass-preprocess`, the same code the
//! trainer's evaluation uses, so a package predicts what `semiclass eval`
//! measured.
//!
//! ```no_run
//! use semiclass_sdk::{Model, Package, environment};
//! # fn main() -> Result<(), semiclass_sdk::SdkError> {
//! let package = Package::read("/opt/my-package".as_ref())?;
//! let model = Model::open(&package, &package.default_activation()?, &environment()?)?;
//! let top5 = model.predict(&std::fs::read("cat.jpg").unwrap(), 5)?;
//! # Ok(()) }
//! ```

mod error;
pub mod ffi;
mod hooks;
mod model;
mod package;
mod runtime;

pub use error::{SdkError, Status};
pub use model::{LoadOptions, Model, Prediction, top_k};
pub use package::{ACTIVATIONS_DIR, Package, environment};
pub use semiclass_onnxruntime::device::Device;

/// The SDK's version as `infer --version` and `semiclass_version()` report
/// it. A build with test hooks says so here, which is how a packaging step
/// recognises (and refuses) it.
pub const VERSION: &str = hooks::VERSION;
