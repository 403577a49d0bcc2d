//! Everything a run needs before its first step: the device, the run
//! directory, the images.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use semiclass_dataset::Dataset;
use semiclass_dataset::paths::RelPath;
use semiclass_manifest::PreprocessSpec;
use tch::Device;

use semiclass_manifest::checkpoint::CheckpointMeta;
use semiclass_models::{Model, ModelOptions};

use super::TrainError;
use crate::checkpoint::load_weights;
use crate::config::TrainConfig;
use crate::data::loader::Transform;
use crate::data::store::{ImageStore, LoadError, StoreSpec, Use};
use crate::nn::Network;

/// `auto` (CUDA when available), `cpu`, `cuda` or `cuda:N`.
pub fn select_device(name: &str) -> Result<Device, TrainError> {
    let cuda = |i: usize| {
        if tch::Cuda::is_available() && i < tch::Cuda::device_count() as usize {
            Ok(Device::Cuda(i))
        } else {
            Err(TrainError::Device(format!(
                "{name}: no such CUDA device on this machine; use run.device=cpu"
            )))
        }
    };
    match name {
        "auto" => Ok(Device::cuda_if_available()),
        "cpu" => Ok(Device::Cpu),
        "cuda" => cuda(0),
        other => match other.strip_prefix("cuda:").and_then(|i| i.parse().ok()) {
            Some(i) => cuda(i),
            None => Err(TrainError::Device(format!(
                "unknown device '{other}'; use auto, cpu, cuda or cuda:N"
            ))),
        },
    }
}

/// What the caller provides to train one model besides the configuration.
pub struct ModelRun<'a> {
    pub cfg: &'a TrainConfig,
    pub dataset: &'a Dataset,
    pub run: &'a RunDir,
    pub device: Device,
    /// Set by SIGINT/SIGTERM: save a resumable state and stop.
    pub stop: &'a AtomicBool,
    /// A `*-last.state.safetensors` file to continue from.
    pub resume: Option<PathBuf>,
    pub on_image: &'a (dyn Fn() + Sync),
    /// Progress of teacher predictions: (done, total).
    pub on_teacher: &'a dyn Fn(usize, usize),
    /// The process group of a data-parallel run; `None` for one process.
    pub dist: Option<&'a super::dist::Dist>,
}

/// The network a checkpoint describes (model, classes, input size from its
/// metadata) with the checkpoint's weights loaded.
pub fn network_from_checkpoint(
    path: &Path,
    device: Device,
) -> Result<(Network, CheckpointMeta), TrainError> {
    let (meta, tensors) = load_weights(path)?;
    let options =
        ModelOptions::new(meta.num_classes, meta.input_size as usize).with_stem(meta.stem);
    let mut net = Network::new(Model::new(&meta.model, options)?, device);
    net.load_tensors(tensors, path)?;
    Ok((net, meta))
}

/// A run's folder: config, metrics, curves and checkpoints.
#[derive(Debug, Clone)]
pub struct RunDir {
    pub path: PathBuf,
}

impl RunDir {
    /// Creates `parent/name`; an existing non-empty folder is refused so
    /// that no earlier run is ever overwritten.
    pub fn create(parent: &Path, name: &str) -> Result<RunDir, TrainError> {
        let path = parent.join(name);
        let io = |source| TrainError::Io {
            path: path.clone(),
            source,
        };
        if std::fs::read_dir(&path).is_ok_and(|mut d| d.next().is_some()) {
            return Err(TrainError::RunExists(path));
        }
        std::fs::create_dir_all(path.join("checkpoints")).map_err(io)?;
        Ok(RunDir { path })
    }

    /// Creates `parent/name` without a checkpoints folder: a joint run's
    /// folder, holding `large/` and `small/`.
    pub fn create_group(parent: &Path, name: &str) -> Result<RunDir, TrainError> {
        let run = RunDir::create(parent, name)?;
        let _ = std::fs::remove_dir(run.path.join("checkpoints"));
        Ok(run)
    }

    /// `parent/name`, created, or (`existing`) opened for resuming.
    pub fn create_or_open(parent: &Path, name: &str, existing: bool) -> Result<RunDir, TrainError> {
        if existing {
            Ok(RunDir::open(&parent.join(name)))
        } else {
            RunDir::create(parent, name)
        }
    }

    /// An existing run directory, for resuming.
    pub fn open(path: &Path) -> RunDir {
        RunDir {
            path: path.to_path_buf(),
        }
    }

    pub fn checkpoint(&self, name: &str) -> PathBuf {
        self.path.join("checkpoints").join(name)
    }
}

/// The images of a run in one store, and each split as store indices.
pub struct RunData {
    pub classes: Vec<String>,
    pub store: Arc<ImageStore>,
    pub transform: Arc<Transform>,
    /// `(store index, class id)`.
    pub train: Vec<(usize, i64)>,
    pub unlabeled: Vec<usize>,
    pub val: Vec<(usize, i64)>,
    pub test: Vec<(usize, i64)>,
}

/// Decodes the dataset's images (in memory when they fit `cache_mb`).
pub fn load_data(
    dataset: &Dataset,
    eval: PreprocessSpec,
    cache_mb: u64,
    on_image: &(dyn Fn() + Sync),
) -> Result<RunData, LoadError> {
    let mut index: HashMap<RelPath, usize> = HashMap::new();
    let mut images: Vec<(PathBuf, Use)> = Vec::new();
    let mut slot = |p: &RelPath, usage: Use| {
        *index.entry(p.clone()).or_insert_with(|| {
            images.push((PathBuf::from(p.as_str()), usage));
            images.len() - 1
        })
    };
    let mut labeled = |entries: &[semiclass_dataset::lists::LabeledEntry], usage: Use| {
        entries
            .iter()
            .map(|e| (slot(&e.path, usage), e.class_id as i64))
            .collect::<Vec<_>>()
    };
    let train = labeled(&dataset.train, Use::Train);
    let val = labeled(&dataset.val, Use::Eval);
    let test = labeled(dataset.test.as_deref().unwrap_or_default(), Use::Eval);
    let unlabeled = dataset
        .unlabeled
        .iter()
        .map(|e| slot(&e.path, Use::Train))
        .collect();
    let input_size = eval.crop;
    let spec = StoreSpec {
        input_size,
        eval: eval.clone(),
        budget_bytes: cache_mb << 20,
    };
    let store = ImageStore::load(&dataset.root, images, &spec, on_image)?;
    Ok(RunData {
        classes: dataset.classes.clone(),
        store: Arc::new(store),
        // Flips until the run settles `data.flip` (engine::large::measure_references).
        transform: Arc::new(Transform {
            input_size,
            eval,
            flip: true,
        }),
        train,
        unlabeled,
        val,
        test,
    })
}
