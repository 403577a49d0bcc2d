//! Data for training: augmentations and (later) the parallel loader.

pub mod augment;
