//! The training engine: stages, steps, evaluation, checkpoints.

pub mod dist;
pub mod evaluate;
pub mod large;
pub mod oom;
pub mod pipeline;
pub mod plan;
pub mod record;
pub mod setup;
pub mod small;
pub mod stage;
pub mod step;
pub mod worth;

use std::path::PathBuf;

/// Why training stopped before its end.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Dataset(#[from] semiclass_dataset::OpenError),
    #[error("{0}")]
    Load(#[from] crate::data::store::LoadError),
    #[error("{0}")]
    Model(#[from] semiclass_models::ModelError),
    #[error("{0}")]
    Weights(#[from] crate::nn::WeightsError),
    #[error("{0}")]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
    #[error("{0}")]
    Device(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}: a run already exists there; choose another run.name, or resume it with --resume")]
    RunExists(PathBuf),
    #[error("num_classes is {config} in the config but label.txt defines {dataset} classes")]
    ClassCount { config: usize, dataset: usize },
    #[error(
        "the loss became {value} at step {step} of stage {stage}; last good checkpoint: {last_good}. Lower the learning rate (or set grad_clip) and resume from it"
    )]
    NonFinite {
        stage: String,
        step: u64,
        value: f64,
        last_good: String,
    },
    #[error("{0}")]
    Resume(String),
    /// A data-parallel run could not go on (a rank failed, a collective timed out).
    #[error("{0}")]
    Distributed(String),
    #[error("{0}")]
    Teacher(String),
    #[error(
        "out of memory at step {step} of stage {stage} with batch_size {batch_size}; try -o {section}.batch_size={try_batch_size} (or a smaller input_size) and resume from the stage's last state"
    )]
    OutOfMemory {
        section: String,
        batch_size: usize,
        try_batch_size: usize,
        stage: String,
        step: u64,
    },
}
