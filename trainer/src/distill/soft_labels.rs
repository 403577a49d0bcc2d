//! The teacher's soft predictions for a list of images, computed once in
//! batches and cached next to the runs.
//!
//! Each image goes through the teacher's own evaluation transform (the
//! shared preprocessing, from the file), optionally averaged with its
//! mirror image; the top-k probabilities at temperature T are kept. The
//! cache file is keyed by the teacher's sha256, the image list, T, k and
//! the flip, so it is reused exactly when all of them are unchanged. An
//! interrupted computation leaves a partial file it continues from. The
//! ranks of a data-parallel run label their shares of each chunk and
//! assemble the table on every rank; rank 0 alone keeps the files
//! (`super::shards`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;
use semiclass_preprocess::{DecodeLimits, preprocess_bytes};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tch::{Device, Kind, Tensor};

use super::shards::{Ranks, Rows, Start};
use super::teacher::Teacher;
use crate::checkpoint::{load_state, save_state};
use crate::data::store::ImageStore;
use crate::engine::TrainError;
use crate::engine::dist::Dist;

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
    /// The ranks that share the work, in a data-parallel run.
    pub dist: Option<&'a Dist>,
}

/// The teacher's top-k probabilities for every image of a job.
pub struct SoftLabels {
    row_of: HashMap<usize, usize>,
    /// `[images, k]`, at temperature T.
    probs: Tensor,
    /// `[images, k]` class ids.
    classes: Tensor,
    num_classes: usize,
    /// The cache file they were read from or written to (rank 0's: the
    /// other ranks of a data-parallel run read and write none).
    pub file: PathBuf,
    /// Whether they were read from an existing cache file.
    pub reused: bool,
    /// Images this process ran through the teacher: its share of those
    /// that were not cached.
    pub labeled_here: usize,
}

/// Saved next to the tensors.
#[derive(Debug, Serialize, Deserialize)]
struct CacheInfo {
    key: String,
    done: usize,
    total: usize,
}

impl SoftLabels {
    /// Loads the cache for `job`, or computes (the rest of) it, over the
    /// ranks of a data-parallel run when `job.dist` is one. `None` when a
    /// stop was requested before the end (the partial file keeps what was
    /// done).
    pub fn compute_or_load(job: &SoftLabelJob) -> Result<Option<SoftLabels>, TrainError> {
        compute_in_chunks(job, CHUNK)
    }

    fn new(job: &SoftLabelJob, rows: Rows, file: PathBuf, reused: bool) -> Self {
        let shape = [job.indices.len() as i64, job.topk as i64];
        SoftLabels {
            row_of: job
                .indices
                .iter()
                .enumerate()
                .map(|(r, &i)| (i, r))
                .collect(),
            probs: Tensor::from_slice(&rows.probs).reshape(shape),
            classes: Tensor::from_slice(&rows.classes).reshape(shape),
            num_classes: job.teacher.meta.num_classes,
            file,
            reused,
            labeled_here: 0,
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

/// [`SoftLabels::compute_or_load`], saving the partial file about every
/// `chunk` images.
fn compute_in_chunks(job: &SoftLabelJob, chunk: usize) -> Result<Option<SoftLabels>, TrainError> {
    let ranks = Ranks::new(job.dist);
    let files = CacheFiles::of(job);
    let mut rows = rows_done(job, &ranks, &files)?;
    if rows.count(job.topk) == job.indices.len() {
        return Ok(Some(SoftLabels::new(job, rows, files.complete, true)));
    }
    ranks.same_teacher(job.teacher)?;
    if ranks.is_root() {
        std::fs::create_dir_all(&job.cache_dir).map_err(|source| TrainError::Io {
            path: job.cache_dir.clone(),
            source,
        })?;
    }
    let Some(labeled_here) = label_rest(job, &ranks, &files, &mut rows, chunk)? else {
        return Ok(None);
    };
    if ranks.is_root() {
        write_cache(&files.complete, &files.key, job, &rows)?;
        let _ = std::fs::remove_file(&files.partial);
    }
    Ok(Some(SoftLabels {
        labeled_here,
        ..SoftLabels::new(job, rows, files.complete, false)
    }))
}

/// A job's cache files.
struct CacheFiles {
    key: String,
    complete: PathBuf,
    partial: PathBuf,
}

impl CacheFiles {
    fn of(job: &SoftLabelJob) -> CacheFiles {
        let key = cache_key(job);
        let name = &key[..24];
        CacheFiles {
            complete: job.cache_dir.join(format!("{name}.safetensors")),
            partial: job.cache_dir.join(format!("{name}.partial.safetensors")),
            key,
        }
    }
}

/// The rows done before, on every rank: rank 0 alone reads its files
/// (another machine's ranks may not see them) and sends their rows.
fn rows_done(job: &SoftLabelJob, ranks: &Ranks, files: &CacheFiles) -> Result<Rows, TrainError> {
    let mut rows = match ranks.is_root() {
        true => read_done(files, job)?,
        false => Rows::default(),
    };
    let start = ranks.agree_on_start(Start {
        done: rows.count(job.topk),
        total: job.indices.len(),
        topk: job.topk,
        fingerprint: job_fingerprint(job),
    })?;
    ranks.share_rows(&mut rows, start.done, job.topk)?;
    Ok(rows)
}

/// Labels the rows after `rows` chunk by chunk, each rank its share, rank
/// 0 saving the partial file after each. The number of images labeled
/// here, or `None` when a rank was asked to stop.
fn label_rest(
    job: &SoftLabelJob,
    ranks: &Ranks,
    files: &CacheFiles,
    rows: &mut Rows,
    chunk: usize,
) -> Result<Option<usize>, TrainError> {
    let (k, total) = (job.topk, job.indices.len());
    let batch = job.batch_size.max(1);
    let chunk = ranks.chunk_rows(batch, chunk);
    let mut labeled_here = 0;
    while rows.count(k) < total {
        let done = rows.count(k);
        if ranks.any_stop(job.stop.load(Ordering::SeqCst))? {
            if ranks.is_root() {
                write_cache(&files.partial, &files.key, job, rows)?;
            }
            return Ok(None);
        }
        let len = chunk.min(total - done);
        let mine = ranks.share(len, batch);
        let labeled = label_chunk(job, &job.indices[done + mine.start..done + mine.end])?;
        labeled_here += mine.len();
        rows.extend(ranks.assemble(len, k, mine, labeled)?);
        (job.on_progress)(rows.count(k), total);
        if ranks.is_root() && rows.count(k) < total {
            write_cache(&files.partial, &files.key, job, rows)?;
        }
    }
    Ok(Some(labeled_here))
}

/// sha256 over everything the predictions depend on.
fn cache_key(job: &SoftLabelJob) -> String {
    let mut h = Sha256::new();
    h.update(b"semiclass soft labels v1\n");
    h.update(job.teacher.sha256.as_bytes());
    hash_job(job, &mut h);
    format!("{:x}", h.finalize())
}

/// What the ranks of a run must agree on: the job without the teacher's
/// file, and the batch size (the ranks' shares are whole batches).
fn job_fingerprint(job: &SoftLabelJob) -> u64 {
    let mut h = Sha256::new();
    h.update(format!(
        "semiclass soft-label shares\nbatch={}\n",
        job.batch_size
    ));
    hash_job(job, &mut h);
    let digest = h.finalize();
    u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// The settings and the image list of a job, into `h`.
fn hash_job(job: &SoftLabelJob, h: &mut Sha256) {
    let preprocess = serde_json::to_string(&job.teacher.meta.preprocess).expect("serialises");
    h.update(format!(
        "\n{preprocess}\nt={}\nk={}\nflip={}\n",
        job.t, job.topk, job.flip
    ));
    for &i in job.indices {
        h.update(job.store.relative_path(i).to_string_lossy().as_bytes());
        h.update(b"\n");
    }
}

/// Decodes a chunk in parallel and runs the teacher over it in batches.
fn label_chunk(job: &SoftLabelJob, chunk: &[usize]) -> Result<Rows, TrainError> {
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
    let mut rows = Rows::default();
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
        rows.probs
            .extend(Vec::<f32>::try_from(values.flatten(0, -1)).expect("f32 probs"));
        rows.classes
            .extend(Vec::<i64>::try_from(ids.flatten(0, -1)).expect("i64 ids"));
    }
    Ok(rows)
}

fn write_cache(path: &Path, key: &str, job: &SoftLabelJob, rows: &Rows) -> Result<(), TrainError> {
    let k = job.topk;
    let count = rows.count(k);
    let shape = [count as i64, k as i64];
    let tensors = vec![
        (
            "probs".to_string(),
            Tensor::from_slice(&rows.probs).reshape(shape),
        ),
        (
            "classes".to_string(),
            Tensor::from_slice(&rows.classes).reshape(shape),
        ),
    ];
    let info = CacheInfo {
        key: key.to_string(),
        done: count,
        total: job.indices.len(),
    };
    save_state(
        path,
        &tensors,
        &serde_json::to_value(info).expect("serialises"),
    )?;
    Ok(())
}

/// The rows done: all of them from a complete cache file, else what an
/// interrupted computation left in the partial file, else none.
fn read_done(files: &CacheFiles, job: &SoftLabelJob) -> Result<Rows, TrainError> {
    match read_cache(&files.complete, &files.key, job.indices.len())? {
        Some(rows) => Ok(rows),
        None => Ok(read_partial(&files.partial, &files.key, job)),
    }
}

/// A complete cache file for `key`, if there is one.
fn read_cache(path: &Path, key: &str, total: usize) -> Result<Option<Rows>, TrainError> {
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
    let named: HashMap<String, Tensor> = tensors.into_iter().collect();
    Ok(rows_of(&named).filter(|rows| rows.probs.len() == rows.classes.len()))
}

/// What an interrupted computation for `key` left (fewer rows than the
/// job's; a partial file is never complete).
fn read_partial(path: &Path, key: &str, job: &SoftLabelJob) -> Rows {
    if let Ok((tensors, info)) = load_state(path)
        && let Ok(info) = serde_json::from_value::<CacheInfo>(info)
        && info.key == key
    {
        let named: HashMap<String, Tensor> = tensors.into_iter().collect();
        if let Some(rows) = rows_of(&named)
            && named["probs"].size().get(1) == Some(&(job.topk as i64))
            && rows.probs.len() == rows.classes.len()
            && rows.count(job.topk) < job.indices.len()
        {
            return rows;
        }
    }
    Rows::default()
}

/// The `probs` and `classes` tensors of a cache file, flat.
fn rows_of(named: &HashMap<String, Tensor>) -> Option<Rows> {
    let (p, c) = (named.get("probs")?, named.get("classes")?);
    Some(Rows {
        probs: Vec::try_from(p.flatten(0, -1)).ok()?,
        classes: Vec::try_from(c.flatten(0, -1)).ok()?,
    })
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
            labeled_here: 0,
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

#[cfg(test)]
mod two_rank_tests;
