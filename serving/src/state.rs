//! Everything the handlers share: the models, tokens, limits, counters and
//! the optional issuer behind `/v1/activate`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use semiclass_license_issuer::{Issuer, IssuerError};
use semiclass_manifest::package::PackageManifest;

use crate::activate::ACTIVATION_CAP;
use crate::decoding::DecodePool;
use crate::engine::{
    Backend, BatchSettings, Batcher, EngineError, Lanes, OrtBackend, init_runtime,
};
use crate::limits::{Admission, Limits};
use crate::metrics::{BatchStats, Metrics};
use crate::tokens::{LiveTokens, TokenStore};
use semiclass_onnxruntime::device::{Device, Placement};
use semiclass_package::{Package, PackageError};

/// How to start serving.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Package folders or zips.
    pub packages: Vec<PathBuf>,
    pub tokens: PathBuf,
    /// ONNX Runtime library; `None`: the first package's own.
    pub onnxruntime: Option<PathBuf>,
    pub limits: Limits,
    pub batch: BatchSettings,
    /// Images decoded at once, over all requests.
    pub decode_threads: usize,
    /// `(database, private key)` of the license issuer, enabling
    /// `/v1/activate`.
    pub issuer: Option<(PathBuf, PathBuf)>,
    /// Run a CUDA package on the CPU when its GPU cannot be used (logged);
    /// without it such a package stops the server with the reason.
    pub allow_cpu_fallback: bool,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Package(#[from] PackageError),
    #[error("{path}: {source}", path = path.display())]
    Engine { path: PathBuf, source: EngineError },
    #[error("{0}")]
    Issuer(#[from] IssuerError),
    #[error("{second} and {first} are both package {id}: serve each package once", first = first.display(), second = second.display())]
    DuplicateId {
        id: String,
        first: PathBuf,
        second: PathBuf,
    },
    #[error(
        "no ONNX Runtime library: none of the packages ships one as a folder; give --onnxruntime PATH or set ORT_DYLIB_PATH"
    )]
    NoRuntime,
    #[error("give at least one --package")]
    NoPackage,
}

/// A served model.
pub struct Model {
    pub manifest: PackageManifest,
    pub batcher: Batcher,
    pub stats: Arc<BatchStats>,
}

/// The state behind every route.
pub struct AppState {
    pub models: BTreeMap<String, Arc<Model>>,
    pub tokens: LiveTokens,
    pub limits: Limits,
    /// The prediction API's concurrency cap.
    pub admission: Admission,
    /// `/v1/activate`'s own, smaller cap: activation never takes a
    /// prediction's slot.
    pub activation: Admission,
    pub decoder: DecodePool,
    pub metrics: Arc<Metrics>,
    pub issuer: Option<Arc<Issuer>>,
    /// False while starting and once shutting down (`/readyz` says 503).
    pub ready: AtomicBool,
}

impl AppState {
    /// Loads and checks every package, starts its sessions and runs one
    /// image through each, so the first request does not pay for warm-up.
    pub fn load(config: &ServeConfig) -> Result<AppState, StartError> {
        let packages = config
            .packages
            .iter()
            .map(|p| Package::open(p))
            .collect::<Result<Vec<_>, _>>()?;
        let library = config
            .onnxruntime
            .clone()
            .or_else(|| packages.iter().find_map(Package::runtime_library))
            .ok_or(StartError::NoRuntime)?;
        init_runtime(&library).map_err(|source| StartError::Engine {
            path: library.clone(),
            source,
        })?;
        check_unique(&packages)?;
        let metrics = Arc::new(Metrics::default());
        let mut models = BTreeMap::new();
        for package in packages {
            let id = package.manifest.package_id.clone();
            let stats = metrics.batch_stats(&id);
            let model = start_model(package, config.batch, stats, config.allow_cpu_fallback)?;
            models.insert(id, Arc::new(model));
        }
        Self::assemble(config, models, metrics)
    }

    fn assemble(
        config: &ServeConfig,
        models: BTreeMap<String, Arc<Model>>,
        metrics: Arc<Metrics>,
    ) -> Result<AppState, StartError> {
        if models.is_empty() {
            return Err(StartError::NoPackage);
        }
        let issuer = match &config.issuer {
            Some((db, key)) => {
                let key = semiclass_license_issuer::keys::read_private_key(key)?;
                Some(Arc::new(Issuer::new(db, key)?))
            }
            None => None,
        };
        Ok(AppState {
            models,
            tokens: LiveTokens::new(TokenStore::new(&config.tokens)),
            limits: config.limits,
            admission: Admission::new(config.limits.prediction_cap(), Some(metrics.clone())),
            activation: Admission::new(ACTIVATION_CAP, None),
            decoder: DecodePool::new(config.decode_threads, metrics.clone()),
            metrics,
            issuer,
            ready: AtomicBool::new(true),
        })
    }
}

/// Refuses two packages with the same id: their routes would collide.
fn check_unique(packages: &[Package]) -> Result<(), StartError> {
    let mut seen: BTreeMap<&str, &PathBuf> = BTreeMap::new();
    for package in packages {
        let id = package.manifest.package_id.as_str();
        if let Some(first) = seen.insert(id, &package.path) {
            return Err(StartError::DuplicateId {
                id: id.to_string(),
                first: first.clone(),
                second: package.path.clone(),
            });
        }
    }
    Ok(())
}

/// Starts the sessions of one package and warms them up.
fn start_model(
    package: Package,
    batch: BatchSettings,
    stats: BatchStats,
    allow_cpu_fallback: bool,
) -> Result<Model, StartError> {
    let spec = &package.manifest.model;
    let side = spec.input_size as usize;
    let sample_shape = [3, side, side];
    let engine_err = |source| StartError::Engine {
        path: package.path.clone(),
        source,
    };
    let onnx = package.model_bytes()?;
    let names = (spec.input_name.as_str(), spec.output_name.as_str());
    let placement = Placement {
        cuda: package.manifest.runtime.cuda.as_ref(),
        allow_cpu_fallback,
    };
    let logged = std::sync::Once::new();
    let session = |threads| -> Result<Box<dyn Backend>, StartError> {
        let (mut backend, device) =
            OrtBackend::placed(onnx, threads, names, sample_shape, placement)
                .map_err(engine_err)?;
        logged.call_once(|| log_device(&package.manifest.package_id, &device));
        let logits = backend
            .run(vec![0.0; 3 * side * side], 1)
            .map_err(|e| engine_err(EngineError::Model(e)))?;
        if logits.len() != spec.class_names.len() {
            return Err(engine_err(EngineError::Model(format!(
                "the model gives {} logits but the manifest names {} classes",
                logits.len(),
                spec.class_names.len()
            ))));
        }
        Ok(Box::new(backend))
    };
    let sessions = batch.sessions.max(1);
    let narrow = (0..sessions)
        .map(|_| session(batch.threads))
        .collect::<Result<Vec<_>, _>>()?;
    // One more copy of the model in memory buys a lone request every core.
    let wide = match sessions {
        1 => None,
        n => Some(session(n * batch.threads)?),
    };
    let stats = Arc::new(stats);
    let lanes = Lanes { narrow, wide };
    let batcher = Batcher::start(lanes, batch, spec.class_names.len(), stats.clone());
    Ok(Model {
        manifest: package.manifest,
        batcher,
        stats,
    })
}

/// Says where a CUDA package runs; a fallback to the CPU is a warning.
fn log_device(id: &str, device: &Device) {
    match device {
        Device::Cpu => {}
        Device::Cuda => tracing::info!("model {id}: on the GPU (CUDA execution provider)"),
        Device::CpuFallback(why) => tracing::warn!(
            "model {id}: running on the CPU as --allow-cpu-fallback allows, not the GPU: {why}"
        ),
    }
}
