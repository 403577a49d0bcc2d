//! The model zoo: every architecture written once as forward code over the
//! [`backend::Backend`] trait, with timm's parameter names.
//!
//! Why forward code over a backend rather than a layer spec: composite
//! blocks (attention, Swin's shifted windows, HGNet's concatenating stages)
//! stay one readable file per family, and the same code drives shape
//! inference ([`spec`]), training (tch, in the trainer) and ONNX export.
//! This crate depends on no tensor library.

pub mod backend;
pub mod families;
pub mod layers;
pub mod model;
pub mod registry;
pub mod spec;

pub use backend::{Backend, ParamKind, ParamSpec};
pub use model::{Model, ModelError, ModelOptions, ResizableGrid, Stem};
pub use registry::{Entry, MODELS, find};
