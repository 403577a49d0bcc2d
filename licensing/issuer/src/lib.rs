//! The vendor side of semiclass licensing: signing keys, the serial
//! database and activation (a request in, a signed license out). It holds
//! the private key, so it is never linked into an SDK; the verify side is
//! `semiclass-licensing`.

mod activate;
pub mod dates;
mod db;
mod error;
pub mod keys;

pub use activate::Issuer;
pub use db::{Grant, IssuerDb, MintSpec, SerialRecord};
pub use error::IssuerError;
