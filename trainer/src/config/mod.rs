//! Run configuration: one YAML file plus `-o section.key=value` overrides.

mod resolve;

pub use resolve::{ConfigError, resolve, to_yaml};
