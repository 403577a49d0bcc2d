//! Evaluations: `semiclass eval` as a job of the queue (on val, test or an
//! uploaded list, checked first as the CLI checks it), the history of every
//! evaluation from the registry, and the report page over the files the
//! CLI wrote.

pub mod pages;
pub mod report;
mod request;

pub use request::{EvalRequest, EvalSourceChoice, checked_checkpoint, checkpoint_config};
