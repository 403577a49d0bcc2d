//! The licensing flow across the issuer and the verify side: a vendor with a
//! key and a database, packages on disk, machines with injected
//! fingerprints, and what an attacker tries.

mod attacks;
mod cli;
mod common;
mod concurrency;
mod encryption;
mod flow;
