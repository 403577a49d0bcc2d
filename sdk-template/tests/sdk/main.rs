//! The offline SDK end to end: packages built in temporary folders, a
//! vendor issuing licenses with the issuer's library, machines and clocks
//! injected through the SDK's test hooks, and the `infer` binary, the C
//! example and the Python example run as a user would.

mod attacks;
mod common;
mod cuda;
mod flow;
mod packages;
