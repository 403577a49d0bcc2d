//! Run configuration: one YAML file plus `-o section.key=value` overrides.

mod resolve;
mod train;

pub use resolve::{ConfigError, resolve, to_yaml};
pub use train::{
    AlgorithmKind, DataConfig, LargeConfig, ModelTrainConfig, OptimizerKind, RunConfig, SslConfig,
    TrainConfig,
};
