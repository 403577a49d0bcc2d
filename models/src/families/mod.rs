//! One file per architecture family.

pub mod hgnet;
pub mod resnet;
