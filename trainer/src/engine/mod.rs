//! The training engine: stages, steps, evaluation, checkpoints.

pub mod evaluate;
pub mod plan;
