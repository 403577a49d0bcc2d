//! The studio's HTTP face, driven without a socket (axum oneshot), and its
//! job queue running real `semiclass train` processes.

mod access;
mod browser_deploy;
mod common;
mod datasets;
mod deploy;
mod evals;
mod jobs;
mod train;
mod upload;
