//! The teacher's soft predictions for a list of images, computed once in
//! batches and cached next to the runs.
//!
//! Each image goes through the teacher's own evaluation transform (the
//! shared preprocessing, from the file), optionally averaged with its
//! mirror image; the top-k probabilities at temperature T are kept. The
//! cache file is keyed by the teacher's sha256, the image list, T, k and
//! the flip, so it is reused exactly when all of them are unchanged. An
//! interrupted computation leaves a partial file it continues from.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;
use semiclass_preprocess::{DecodeLimits, preprocess_bytes};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tch::{Device, Kind, Tensor};

use super::teacher::Teacher;
use crate::checkpoint::{load_state, save_state};
use crate::data::store::ImageStore;
use crate::engine::TrainError;

/// Images decoded and labeled between two saves of the partial file.
const CHUNK: usize = 2048;

/// What to compute.
pub struct SoftLabelJob<'a> {
    pub teacher: &'a Teacher,
    pub store: &'a ImageStore,
    /// Store indices of the images to label, in a fixed order.
    pub indices: &'a [usize],
    pub t: f64,
    pub topk: usize,
    pub flip: bool,
    pub batch_size: usize,
    /// The folder of cache files (shared by the runs under one parent).
    pub cache_dir: PathBuf,
    pub stop: &'a AtomicBool,
    /// Called with (done, total) after every chunk.
    pub on_progress: &'a dyn Fn(usize, usize),
}

/// The teacher's top-k probabilities for every image of a job.
pub struct SoftLabels {
    row_of: HashMap<usize, usize>,
    /// `[images, k]`, at temperature T.
    probs: Tensor,
    /// `[images, k]` class ids.
    classes: Tensor,
    num_classes: usize,
    /// The cache file they were read from or written to.
    pub file: PathBuf,
    /// Whether they were read from an existing cache file.
    pub reused: bool,
}

/// Saved next to the tensors.
#[derive(Debug, Serialize, Deserialize)]
struct CacheInfo {
    key: String,
    done: usize,
    total: usize,
}

impl SoftLabels {
    /// Loads the cache for `job`, or computes (the rest of) it. `None`
    /// when a stop was requested before the end (the partial file keeps
    /// what was done).
    pub fn compute_or_load(job: &SoftLabelJob) -> Result<Option<SoftLabels>, TrainError> {
        let key = cache_key(job);
        let file = job.cache_dir.join(format!("{}.safetensors", &key[..24]));
        let partial = job
            .cache_dir
            .join(format!("{}.partial.safetensors", &key[..24]));
        if let Some((probs, classes)) = read_cache(&file, &key, job.indices.len())? {
            return Ok(Some(SoftLabels::new(job, probs, classes, file, true)));
        }
        std::fs::create_dir_all(&job.cache_dir).map_err(|source| TrainError::Io {
            path: job.cache_dir.clone(),
            source,
        })?;
        let (mut probs, mut classes) = read_partial(&partial, &key, job)?;
        let total = job.indices.len();
        while probs.len() / job.topk < total {
            let done = probs.len() / job.topk;
            if job.stop.load(Ordering::SeqCst) {
                write_cache(&partial, &key, total, &probs, &classes, job.topk)?;
                return Ok(None);
            }
            let chunk = &job.indices[done..(done + CHUNK).min(total)];
            let (p, c) = label_chunk(job, chunk)?;
            probs.extend(p);
            classes.extend(c);
            (job.on_progress)(probs.len() / job.topk, total);
            if probs.len() / job.topk < total {
                write_cache(&partial, &key, total, &probs, &classes, job.topk)?;
            }
        }
        write_cache(&file, &key, total, &probs, &classes, job.topk)?;
        let _ = std::fs::remove_file(&partial);
        let shape = [total as i64, job.topk as i64];
        let probs = Tensor::from_slice(&probs).reshape(shape);
        let classes = Tensor::from_slice(&classes).reshape(shape);
        Ok(Some(SoftLabels::new(job, probs, classes, file, false)))
    }

    fn new(
        job: &SoftLabelJob,
        probs: Tensor,
        classes: Tensor,
        file: PathBuf,
        reused: bool,
    ) -> Self {
        SoftLabels {
            row_of: job
                .indices
                .iter()
                .enumerate()
                .map(|(r, &i)| (i, r))
                .collect(),
            probs,
            classes,
            num_classes: job.teacher.meta.num_classes,
            file,
            reused,
        }
    }

    /// Full probability rows `[batch, classes]` for store indices: the
    /// top-k as computed, the rest of the mass spread evenly.
    pub fn targets(&self, indices: &[usize], device: Device) -> Tensor {
        let rows: Vec<i64> = indices.iter().map(|i| self.row_of[i] as i64).collect();
        let rows = Tensor::from_slice(&rows);
        let probs = self.probs.index_select(0, &rows);
        let classes = self.classes.index_select(0, &rows);
        let k = probs.size()[1] as usize;
        let rest = if k < self.num_classes {
            (probs.sum_dim_intlist(-1, true, Kind::Float).neg() + 1.0).clamp_min(0.0)
                / (self.num_classes - k) as f64
        } else {
            Tensor::zeros([rows.size()[0], 1], (Kind::Float, Device::Cpu))
        };
        let full = rest.expand([rows.size()[0], self.num_classes as i64], false);
        full.scatter(1, &classes, &probs).to_device(device)
    }

    /// The highest probability and its class for a store index.
    pub fn top(&self, index: usize) -> (f64, i64) {
        let row = self.row_of[&index] as i64;
        (
            self.probs.double_value(&[row, 0]),
            self.classes.int64_value(&[row, 0]),
        )
    }
}

/// sha256 over everything the predictions depend on.
fn cache_key(job: &SoftLabelJob) -> String {
    let mut h = Sha256::new();
    h.update(b"semiclass soft labels v1\n");
    h.update(job.teacher.sha256.as_bytes());
    let preprocess = serde_json::to_string(&job.teacher.meta.preprocess).expect("serialises");
    h.update(format!(
        "\n{preprocess}\nt={}\nk={}\nflip={}\n",
        job.t, job.topk, job.flip
    ));
    for &i in job.indices {
        h.update(job.store.relative_path(i).to_string_lossy().as_bytes());
        h.update(b"\n");
    }
    format!("{:x}", h.finalize())
}

/// Decodes a chunk in parallel and runs the teacher over it in batches.
fn label_chunk(job: &SoftLabelJob, chunk: &[usize]) -> Result<(Vec<f32>, Vec<i64>), TrainError> {
    let spec = &job.teacher.meta.preprocess;
    let data: Vec<Vec<f32>> = chunk
        .par_iter()
        .map(|&i| {
            let path = job.store.file(i);
            let bytes = std::fs::read(&path).map_err(|source| TrainError::Io {
                path: path.clone(),
                source,
            })?;
            preprocess_bytes(&bytes, DecodeLimits::default(), spec)
                .map(|t| t.data)
                .map_err(|e| {
                    TrainError::Teacher(format!("{}: {e}; run `semiclass check`", path.display()))
                })
        })
        .collect::<Result<_, _>>()?;
    let side = spec.crop as i64;
    let (mut probs, mut classes) = (Vec::new(), Vec::new());
    for batch in data.chunks(job.batch_size.max(1)) {
        let flat: Vec<f32> = batch.concat();
        let x = Tensor::from_slice(&flat)
            .reshape([batch.len() as i64, 3, side, side])
            .to_device(job.teacher.net.device());
        let mut p = job.teacher.probs(&x, job.t);
        if job.flip {
            p = (p + job.teacher.probs(&x.flip([3]), job.t)) / 2.0;
        }
        let (values, ids) = p
            .to_device(Device::Cpu)
            .topk(job.topk as i64, -1, true, true);
        probs.extend(Vec::<f32>::try_from(values.flatten(0, -1)).expect("f32 probs"));
        classes.extend(Vec::<i64>::try_from(ids.flatten(0, -1)).expect("i64 ids"));
    }
    Ok((probs, classes))
}

fn write_cache(
    path: &Path,
    key: &str,
    total: usize,
    probs: &[f32],
    classes: &[i64],
    k: usize,
) -> Result<(), TrainError> {
    let rows = (probs.len() / k) as i64;
    let tensors = vec![
        (
            "probs".to_string(),
            Tensor::from_slice(probs).reshape([rows, k as i64]),
        ),
        (
            "classes".to_string(),
            Tensor::from_slice(classes).reshape([rows, k as i64]),
        ),
    ];
    let info = CacheInfo {
        key: key.to_string(),
        done: rows as usize,
        total,
    };
    save_state(
        path,
        &tensors,
        &serde_json::to_value(info).expect("serialises"),
    )?;
    Ok(())
}

/// A complete cache file for `key`, if there is one.
fn read_cache(
    path: &Path,
    key: &str,
    total: usize,
) -> Result<Option<(Tensor, Tensor)>, TrainError> {
    if !path.exists() {
        return Ok(None);
    }
    let (tensors, info) = load_state(path)?;
    let info: CacheInfo = serde_json::from_value(info).map_err(|e| {
        TrainError::Teacher(format!("{}: not a soft-label cache: {e}", path.display()))
    })?;
    if info.key != key || info.done != total {
        return Ok(None);
    }
    let mut named: HashMap<String, Tensor> = tensors.into_iter().collect();
    match (named.remove("probs"), named.remove("classes")) {
        (Some(p), Some(c)) => Ok(Some((p, c))),
        _ => Ok(None),
    }
}

/// What an interrupted computation for `key` left, as flat vectors.
fn read_partial(
    path: &Path,
    key: &str,
    job: &SoftLabelJob,
) -> Result<(Vec<f32>, Vec<i64>), TrainError> {
    if let Ok((tensors, info)) = load_state(path)
        && let Ok(info) = serde_json::from_value::<CacheInfo>(info)
        && info.key == key
    {
        let named: HashMap<String, Tensor> = tensors.into_iter().collect();
        if let (Some(p), Some(c)) = (named.get("probs"), named.get("classes"))
            && p.size().get(1) == Some(&(job.topk as i64))
        {
            let p = Vec::<f32>::try_from(p.flatten(0, -1)).unwrap_or_default();
            let c = Vec::<i64>::try_from(c.flatten(0, -1)).unwrap_or_default();
            if p.len() == c.len() {
                return Ok((p, c));
            }
        }
    }
    Ok((Vec::new(), Vec::new()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_keep_the_top_k_and_spread_the_rest_evenly() {
        let labels = SoftLabels {
            row_of: [(7, 0), (3, 1)].into_iter().collect(),
            probs: Tensor::from_slice(&[0.6f32, 0.2, 0.9, 0.1]).reshape([2, 2]),
            classes: Tensor::from_slice(&[2i64, 0, 1, 3]).reshape([2, 2]),
            num_classes: 4,
            file: PathBuf::new(),
            reused: false,
        };
        let t = labels.targets(&[3, 7], Device::Cpu);
        let rows: Vec<Vec<f32>> = Vec::try_from(t).unwrap();
        let expect = [[0.0f32, 0.9, 0.0, 0.1], [0.2, 0.1, 0.6, 0.1]];
        for (row, want) in rows.iter().zip(expect) {
            for (a, b) in row.iter().zip(want) {
                assert!((a - b).abs() < 1e-6, "{rows:?}");
            }
        }
        assert_eq!(labels.top(7), (0.6000000238418579, 2));
    }
}
