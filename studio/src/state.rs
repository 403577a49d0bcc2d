//! What every request shares: where the registry and the studio's own
//! files are, who is logged in, and the job queue's runner.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use semiclass_registry::Registry;

use crate::access::Access;
use crate::error::StudioError;
use crate::jobs::runner::JobRunner;

/// How the studio was started.
#[derive(Debug, Clone)]
pub struct StudioOptions {
    /// The run registry (runs, checkpoints, marks, and the studio's
    /// datasets and jobs).
    pub registry: PathBuf,
    /// The `semiclass` binary that runs jobs (the running one, normally).
    pub program: PathBuf,
    /// Jobs running at once; one by default, as trainings on one CPU
    /// would only slow each other down.
    pub max_running: usize,
}

/// The studio's shared state.
#[derive(Debug)]
pub struct Studio {
    pub registry_path: PathBuf,
    /// The studio's own files (check reports, job logs, run directories),
    /// next to the registry: a user's folders are only ever read.
    pub data_dir: PathBuf,
    pub access: Access,
    pub jobs: Arc<JobRunner>,
    /// Packages served from the studio (the Deploy page).
    pub serving: crate::deploy::serving::Serving,
}

impl Studio {
    /// The studio for `options`, opened with `token`.
    pub fn new(options: &StudioOptions, token: &str) -> Result<Arc<Studio>, StudioError> {
        let data_dir = options
            .registry
            .parent()
            .unwrap_or(Path::new("."))
            .join("studio");
        std::fs::create_dir_all(&data_dir).map_err(|e| {
            StudioError::Internal(format!(
                "{}: cannot create the studio's folder: {e}; use --registry PATH to put it elsewhere",
                data_dir.display()
            ))
        })?;
        // Opening once now reports a bad registry at start, not at the first page.
        Registry::open(&options.registry)?;
        let jobs = JobRunner::new(options, &data_dir);
        let serving = crate::deploy::serving::Serving::new(data_dir.join("serve-tokens.json"));
        Ok(Arc::new(Studio {
            serving,
            registry_path: options.registry.clone(),
            data_dir,
            access: Access::new(token),
            jobs,
        }))
    }

    /// The registry, opened for this request (SQLite connections are not
    /// shared between threads; opening takes well under a millisecond).
    pub fn registry(&self) -> Result<Registry, StudioError> {
        Ok(Registry::open(&self.registry_path)?)
    }
}
