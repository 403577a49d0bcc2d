//! The job queue: kept in the registry (it outlives the studio), run one
//! job at a time by default, each job a `semiclass` child process (a crash
//! in training never takes the studio down).

pub mod live;
pub mod pages;
pub mod runner;
mod state_files;
