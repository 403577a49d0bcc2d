//! `semiclass-serve`: exported packages behind an authenticated HTTP
//! prediction API (DESIGN.md section 9). ONNX Runtime through `ort`, never
//! libtorch; the images go through the same preprocessing as the trainer's
//! evaluation.

pub mod activate;
pub mod app;
pub mod batch_size;
pub mod decoding;
pub mod engine;
pub mod error;
pub mod limits;
pub mod metrics;
pub mod openapi;
mod page;
pub mod predict;
pub mod serve;
pub mod state;
pub mod threads;
pub mod tokens;
pub mod v2;

pub use app::app;
pub use engine::BatchSettings;
pub use error::{ApiError, ErrorBody};
pub use limits::Limits;
pub use state::{AppState, ServeConfig, StartError};
