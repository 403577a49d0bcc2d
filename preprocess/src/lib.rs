//! Image decoding and preprocessing, implemented once.
//!
//! Every consumer (dataset check, trainer evaluation, server, SDK) calls this
//! crate, so the same file always becomes the same pixels and the same tensor.

pub mod decode;
mod stop;
pub mod transform;

pub use decode::{
    DecodeError, DecodeLimits, DecodedImage, decode_rgb, decode_rgb_until, read_dimensions,
};
pub use transform::{ImageTensor, eval_tensor, preprocess_bytes, preprocess_bytes_until};
