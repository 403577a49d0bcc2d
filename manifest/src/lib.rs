//! Types that travel between the trainer, the exporter, the server and the
//! SDK inside files (checkpoint metadata, package manifests, evaluation reports), and the
//! read side of checkpoint files. Plain data with serde; nothing here needs
//! a tensor library. Also the one-line error report every semiclass program
//! prints ([`error_line`]).

pub mod checkpoint;
pub mod checkpoint_file;
mod error_line;
pub mod eval_report;
pub mod package;
mod preprocess;
pub mod quantization;

pub use error_line::error_line;
pub use preprocess::{Interpolation, PreprocessSpec};
