//! semiclass-serve's integration tests: one binary made of modules.

mod activate;
mod api;
mod common;
mod page;
mod socket;
mod stall;
