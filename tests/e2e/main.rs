//! End-to-end tests: the real binaries on datasets built in temp folders.

mod check;
mod common;
mod demo_data;
mod dist;
mod distill;
mod export;
mod models;
mod registry;
mod sdk;
mod sync_bn;
mod train;
