//! One file per architecture family.

pub mod hgnet;
pub mod lcnet;
pub mod mobilenetv3;
pub mod resnet;
pub mod swin;
pub mod vit;
