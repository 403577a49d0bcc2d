//! Run configuration: one YAML file plus `-o section.key=value` overrides.

pub mod budget;
mod resolve;
mod train;

pub use resolve::{ConfigError, resolve, to_yaml};
pub use train::{
    AlgorithmKind, DataConfig, DistillConfig, DistillMode, LargeConfig, MirrorChoice,
    ModelTrainConfig, OptimizerKind, PseudoLabeler, RunConfig, SelfTrainConfig, SmallConfig,
    SslConfig, TrainConfig,
};
