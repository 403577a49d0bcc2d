//! The job queue: kept in the registry (it outlives the studio), run one
//! job at a time by default, each job a `semiclass` child process (a crash
//! in training never takes the studio down).

pub mod downloads;
pub mod live;
pub mod pages;
pub mod run_files;
pub mod run_parts;
pub mod runner;
mod state_files;
