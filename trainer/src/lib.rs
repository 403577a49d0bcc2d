//! The trainer: models computed with tch, and (in later modules) data
//! loading, semi-supervised algorithms, distillation and checkpoints. The
//! `semiclass` binary in `main.rs` is its command-line face.

pub mod algorithms;
pub mod alloc;
pub mod baseline;
pub mod checkpoint;
/// The run configuration (its own crate, without libtorch: the studio shows it too).
pub use semiclass_config as config;
pub mod data;
pub mod distill;
pub mod ema;
pub mod engine;
pub mod eval_report;
/// A run's `metrics.csv` (its own crate, without libtorch: the studio reads it too).
pub use semiclass_metrics as metrics;
pub mod nn;
pub mod notice;
pub mod openmp;
pub mod optim;
pub mod registry_hooks;
pub mod schedule;
