//! One file per architecture family.

pub mod resnet;
pub mod swin;
pub mod vit;
