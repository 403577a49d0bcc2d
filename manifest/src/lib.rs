//! Types that travel between the trainer, the exporter, the server and the
//! SDK inside files (checkpoint metadata, package manifests). Plain data
//! with serde; no behaviour that needs a tensor library.

pub mod checkpoint;
pub mod package;
mod preprocess;

pub use preprocess::{Interpolation, PreprocessSpec};
