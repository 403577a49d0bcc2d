//! The studio's HTTP face, driven without a socket (axum oneshot), and its
//! job queue running real `semiclass train` processes.

mod access;
mod browser;
mod common;
mod datasets;
mod deploy;
mod evals;
mod jobs;
mod marks;
mod run_page;
mod runs;
mod train;
mod upload;
