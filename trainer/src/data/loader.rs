//! Batches prepared by worker threads ahead of the model.
//!
//! A batch is a pure function of its request (image indices, view kind,
//! seed), so the order in which workers finish does not matter: batches are
//! handed out in request order, and a resumed run sees exactly the batches
//! the interrupted one would have. The number of batches in flight is
//! bounded, and the time the consumer spends waiting is measured.

use std::collections::BTreeMap;
use std::sync::mpsc::{Receiver, sync_channel};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use image::RgbImage;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use semiclass_manifest::PreprocessSpec;
use semiclass_preprocess::transform::normalize;

use super::augment;
use super::store::{ImageStore, LoadError};

/// Which views of each image a batch part holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// The evaluation transform (shared `preprocess` crate).
    Eval,
    /// One weak view.
    Weak,
    /// A weak and a strong view of every image (FixMatch's unlabeled batch).
    WeakStrong,
}

/// One part of a step's batch: images (with labels, -1 when unlabeled)
/// and the views wanted.
#[derive(Debug, Clone)]
pub struct PartRequest {
    pub items: Vec<(usize, i64)>,
    pub view: View,
    /// Position of `items[0]` in the whole part: a data-parallel rank
    /// prepares a slice of the global batch, and each image's augmentation
    /// is seeded by its global position so the slice is exactly what the
    /// single-process run would have made of those images.
    pub first: usize,
}

/// Everything one training or evaluation step needs.
#[derive(Debug, Clone)]
pub struct Request {
    pub parts: Vec<PartRequest>,
    /// Seeds every random choice of this request's augmentations.
    pub seed: u64,
}

/// A prepared part: NCHW float data, plus the strong views when asked.
#[derive(Debug, Clone)]
pub struct PartBatch {
    pub x: Vec<f32>,
    pub x_strong: Option<Vec<f32>>,
    pub labels: Vec<i64>,
    pub indices: Vec<usize>,
}

/// How images become tensors.
#[derive(Debug, Clone)]
pub struct Transform {
    pub input_size: u32,
    pub eval: PreprocessSpec,
    /// Training views are mirrored at random (see `MirrorChoice`).
    pub flip: bool,
}

/// A prepared request, or why an image could not be loaded.
pub type Prepared = Result<Vec<PartBatch>, LoadError>;

/// Hands out prepared batches in request order.
pub struct Loader {
    /// `None` only while dropping, so blocked workers see a closed channel.
    results: Option<Receiver<(usize, Prepared)>>,
    pending: BTreeMap<usize, Prepared>,
    next: usize,
    total: usize,
    progress: Arc<(Mutex<usize>, Condvar)>,
    workers: Vec<JoinHandle<()>>,
    /// Time `next` spent waiting for a batch that was not ready.
    pub waited: Duration,
}

impl Loader {
    /// Starts `workers` threads preparing `requests`, at most `prefetch`
    /// batches ahead of the consumer.
    pub fn start(
        store: Arc<ImageStore>,
        transform: Arc<Transform>,
        requests: Vec<Request>,
        workers: usize,
        prefetch: usize,
    ) -> Loader {
        let total = requests.len();
        let requests = Arc::new(requests);
        let (send, results) = sync_channel(prefetch.max(1) + workers);
        let progress = Arc::new((Mutex::new(0usize), Condvar::new()));
        let claimed = Arc::new(Mutex::new(0usize));
        let workers = (0..workers.max(1))
            .map(|_| {
                let (store, transform, requests) =
                    (store.clone(), transform.clone(), requests.clone());
                let (send, progress, claimed) = (send.clone(), progress.clone(), claimed.clone());
                std::thread::spawn(move || {
                    loop {
                        let Some(i) = claim(&claimed, &progress, total, prefetch) else {
                            return;
                        };
                        let batch = prepare(&store, &transform, &requests[i]);
                        if send.send((i, batch)).is_err() {
                            return;
                        }
                    }
                })
            })
            .collect();
        Loader {
            results: Some(results),
            pending: BTreeMap::new(),
            next: 0,
            total,
            progress,
            workers,
            waited: Duration::ZERO,
        }
    }

    /// The next batch in request order; `None` after the last.
    pub fn next_batch(&mut self) -> Option<Prepared> {
        if self.next >= self.total {
            return None;
        }
        let started = Instant::now();
        let mut waited = false;
        while !self.pending.contains_key(&self.next) {
            waited = true;
            let (i, batch) = self.results.as_ref()?.recv().ok()?;
            self.pending.insert(i, batch);
        }
        if waited {
            self.waited += started.elapsed();
        }
        let batch = self.pending.remove(&self.next);
        self.next += 1;
        let (consumed, wake) = &*self.progress;
        *consumed.lock().expect("loader lock") = self.next;
        wake.notify_all();
        batch
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        // Wake workers waiting for the consumer, and close the channel so
        // that a worker blocked on sending (or about to send) gives up.
        let (consumed, wake) = &*self.progress;
        *consumed.lock().expect("loader lock") = usize::MAX / 2;
        wake.notify_all();
        self.results = None;
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

/// The next request index for a worker, waiting while it would run more
/// than `prefetch` batches ahead of the consumer.
fn claim(
    claimed: &Mutex<usize>,
    progress: &(Mutex<usize>, Condvar),
    total: usize,
    prefetch: usize,
) -> Option<usize> {
    let i = {
        let mut next = claimed.lock().expect("loader lock");
        let i = *next;
        *next += 1;
        i
    };
    if i >= total {
        return None;
    }
    let (consumed, wake) = progress;
    let mut c = consumed.lock().expect("loader lock");
    while i >= *c + prefetch.max(1) {
        c = wake.wait(c).expect("loader lock");
    }
    Some(i)
}

fn prepare(
    store: &ImageStore,
    transform: &Transform,
    request: &Request,
) -> Result<Vec<PartBatch>, LoadError> {
    request
        .parts
        .iter()
        .enumerate()
        .map(|(p, part)| {
            prepare_part(
                store,
                transform,
                part,
                request.seed ^ ((p as u64 + 1) << 56),
            )
        })
        .collect()
}

fn prepare_part(
    store: &ImageStore,
    t: &Transform,
    part: &PartRequest,
    seed: u64,
) -> Result<PartBatch, LoadError> {
    let plane = 3 * (t.input_size as usize).pow(2);
    let mut x = Vec::with_capacity(part.items.len() * plane);
    let mut x_strong = (part.view == View::WeakStrong).then(|| Vec::with_capacity(x.capacity()));
    for (k, &(index, _)) in part.items.iter().enumerate() {
        if part.view == View::Eval {
            x.extend(store.eval_data(index)?);
            continue;
        }
        let image = store.get(index)?;
        let position = (part.first + k) as u64;
        let mut rng = ChaCha8Rng::seed_from_u64(
            seed.wrapping_add(position.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
        );
        x.extend(to_data(
            &augment::weak(&image, t.input_size, t.flip, &mut rng),
            t,
        ));
        if let Some(strong) = &mut x_strong {
            let view = augment::strong(&image, t.input_size, t.flip, &mut rng);
            strong.extend(to_data(&view, t));
        }
    }
    Ok(PartBatch {
        x,
        x_strong,
        labels: part.items.iter().map(|&(_, l)| l).collect(),
        indices: part.items.iter().map(|&(i, _)| i).collect(),
    })
}

/// An augmented view (already at the input size) normalised like the
/// evaluation transform.
fn to_data(view: &RgbImage, t: &Transform) -> Vec<f32> {
    normalize(view, &t.eval).data
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::store::{StoreSpec, Use};
    use semiclass_manifest::Interpolation;

    fn store(n: usize) -> (tempfile::TempDir, Arc<ImageStore>) {
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<std::path::PathBuf> = (0..n).map(|i| format!("{i}.png").into()).collect();
        for (i, p) in paths.iter().enumerate() {
            RgbImage::from_fn(28, 28, |x, y| {
                image::Rgb([(x * 9) as u8, (y * 9) as u8, i as u8])
            })
            .save(dir.path().join(p))
            .unwrap();
        }
        let images = paths.into_iter().map(|p| (p, Use::Train)).collect();
        let spec = StoreSpec {
            input_size: 32,
            eval: transform().eval.clone(),
            budget_bytes: 1 << 30,
        };
        let store = ImageStore::load(dir.path(), images, &spec, &|| {}).unwrap();
        assert!(store.is_cached());
        (dir, Arc::new(store))
    }

    fn transform() -> Arc<Transform> {
        let eval = PreprocessSpec {
            resize: 32,
            crop: 32,
            interpolation: Interpolation::Bilinear,
            mean: [0.5; 3],
            std: [0.5; 3],
        };
        Arc::new(Transform {
            input_size: 32,
            eval,
            flip: true,
        })
    }

    fn requests(n: usize) -> Vec<Request> {
        (0..n)
            .map(|i| Request {
                parts: vec![
                    PartRequest {
                        items: vec![(i % 5, 1), ((i + 1) % 5, 0)],
                        view: View::Weak,
                        first: 0,
                    },
                    PartRequest {
                        items: vec![((i + 2) % 5, -1)],
                        view: View::WeakStrong,
                        first: 0,
                    },
                ],
                seed: i as u64,
            })
            .collect()
    }

    fn run(workers: usize, prefetch: usize) -> Vec<Vec<PartBatch>> {
        let (_dir, store) = store(5);
        let mut loader = Loader::start(store, transform(), requests(12), workers, prefetch);
        std::iter::from_fn(|| loader.next_batch())
            .map(Result::unwrap)
            .collect()
    }

    #[test]
    fn batches_come_in_order_with_the_right_shapes() {
        let batches = run(3, 2);
        assert_eq!(batches.len(), 12);
        for (i, parts) in batches.iter().enumerate() {
            assert_eq!(parts[0].indices, vec![i % 5, (i + 1) % 5]);
            assert_eq!(parts[0].labels, vec![1, 0]);
            assert_eq!(parts[0].x.len(), 2 * 3 * 32 * 32);
            assert!(parts[0].x_strong.is_none());
            assert_eq!(parts[1].x_strong.as_ref().unwrap().len(), 3 * 32 * 32);
        }
    }

    #[test]
    fn batches_do_not_depend_on_thread_count() {
        let one = run(1, 1);
        let many = run(4, 3);
        for (a, b) in one.iter().zip(&many) {
            assert_eq!(a[0].x, b[0].x);
            assert_eq!(a[1].x_strong, b[1].x_strong);
        }
    }

    #[test]
    fn dropping_a_loader_midway_stops_its_workers() {
        let (_dir, store) = store(5);
        let mut loader = Loader::start(store, transform(), requests(100), 3, 2);
        assert!(loader.next_batch().is_some());
        drop(loader);
    }
}
