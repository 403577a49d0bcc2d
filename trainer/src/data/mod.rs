//! Data for training: the image store, augmentations and the parallel loader.

pub mod augment;
pub mod loader;
pub mod store;
