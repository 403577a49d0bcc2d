//! Models as tch tensors: the zoo's forward code computed by libtorch.

mod network;
mod padding_taps;
pub(crate) mod sync_bn;
mod tch_backend;
mod weights;

pub use network::{Layout, Network, to_channels_last};
pub use tch_backend::TchBackend;
pub use weights::{LoadReport, WeightsError};
