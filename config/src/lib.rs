//! Run configuration: one YAML file plus `-o section.key=value` overrides.
//!
//! Its own crate, without libtorch, so that everything that shows or checks
//! a configuration (`semiclass train`, the studio's training form) uses
//! this one schema and its messages.

pub mod budget;
mod resolve;
pub mod train;

pub use resolve::{ConfigError, resolve, to_yaml};
pub use train::{
    AlgorithmKind, DataConfig, DistillConfig, DistillMode, LargeConfig, MirrorChoice,
    ModelTrainConfig, OptimizerKind, PseudoLabeler, RunConfig, SelfTrainConfig, SmallConfig,
    SslConfig, TrainConfig,
};
