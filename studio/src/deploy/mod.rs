//! Deploy: export a checkpoint for a target as a `semiclass export` job,
//! the packages exported (read by the `package` crate's one reader),
//! serving them from inside the studio with `semiclass-serve`'s own engine
//! and token store, and the try-out page.

pub mod export;
pub mod packages;
pub mod pages;
pub mod serving;
pub mod tryout;
