//! Models as tch tensors: the zoo's forward code computed by libtorch.

mod network;
mod tch_backend;
mod weights;

pub use network::Network;
pub use tch_backend::TchBackend;
pub use weights::{LoadReport, WeightsError};
