//! semiclass-serve's integration tests: one binary made of modules.

mod activate;
mod api;
mod common;
mod cuda;
mod int8;
mod page;
mod socket;
mod spin;
mod stall;
mod v2;
