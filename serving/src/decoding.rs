//! Image decoding and preprocessing off the async runtime, a bounded number
//! at once across all requests. Each image takes a permit of one global
//! semaphore before it runs on the blocking pool and holds it until its
//! tensor is ready, so the CPUs and memory spent decoding are bounded by
//! the permits (each at most `max_pixels`), not by how many requests were
//! admitted or how many images each holds. A request whose client hung up
//! (its future dropped) stops its images: those waiting for a permit never
//! start, and the running ones give up at the decoder's next read.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::Bytes;
use semiclass_manifest::PreprocessSpec;
use semiclass_preprocess::{DecodeError, DecodeLimits, ImageTensor, preprocess_bytes_until};
use tokio::sync::Semaphore;

use crate::metrics::Metrics;

/// The global bound on decodes running at once.
#[derive(Debug)]
pub struct DecodePool {
    permits: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

/// Held by a request while it wants its images; dropping it (the request
/// ended, or its client is gone) stops the decodes it started.
#[derive(Debug, Default)]
pub struct Wanted(Arc<AtomicBool>);

impl Wanted {
    /// The flag a decode watches: set once nobody wants its result.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.0.clone()
    }
}

impl Drop for Wanted {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Counts an image from the moment it asks for a permit until its decode
/// ended or was given up; one dropped before its decode ran to an end (the
/// client left while it waited for a permit, or while it decoded) counts
/// as stopped.
struct Pending {
    metrics: Arc<Metrics>,
    ran: bool,
}

impl Pending {
    fn new(metrics: &Arc<Metrics>) -> Pending {
        metrics.decoding.inc();
        Pending {
            metrics: metrics.clone(),
            ran: false,
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.metrics.decoding.dec();
        if !self.ran {
            self.metrics.decodes_stopped.inc();
        }
    }
}

impl DecodePool {
    /// At most `threads` decodes at once.
    pub fn new(threads: usize, metrics: Arc<Metrics>) -> DecodePool {
        DecodePool {
            permits: Arc::new(Semaphore::new(threads.max(1))),
            metrics,
        }
    }

    /// The model input of `bytes`, decoded once a permit is free; gives
    /// up with [`DecodeError::Stopped`] once `stop` is set (see
    /// [`Wanted::stop_flag`]).
    pub async fn preprocess(
        &self,
        bytes: Bytes,
        limits: DecodeLimits,
        spec: Arc<PreprocessSpec>,
        stop: Arc<AtomicBool>,
    ) -> Result<ImageTensor, DecodeError> {
        let pending = Pending::new(&self.metrics);
        // Dropping this future while it waits leaves the queue: no decode.
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| DecodeError::Stopped)?;
        let task = tokio::task::spawn_blocking(move || {
            let (_permit, mut pending) = (permit, pending);
            let result = preprocess_bytes_until(&bytes, limits, &spec, &stop);
            pending.ran = !matches!(result, Err(DecodeError::Stopped));
            result
        });
        // A blocking task cannot be cancelled; only `stop` ends it early.
        task.await.unwrap_or(Err(DecodeError::Stopped))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;
    use std::time::Duration;

    use super::*;

    fn png(side: u32) -> Bytes {
        let image = image::RgbImage::from_pixel(side, side, image::Rgb([9, 9, 9]));
        let mut out = Cursor::new(Vec::new());
        image.write_to(&mut out, image::ImageFormat::Png).unwrap();
        Bytes::from(out.into_inner())
    }

    fn spec() -> Arc<PreprocessSpec> {
        Arc::new(PreprocessSpec::for_input(8, [0.5; 3], [0.5; 3]))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn images_wait_for_a_permit_and_unwanted_ones_never_start() {
        let metrics = Arc::new(Metrics::default());
        let pool = Arc::new(DecodePool::new(1, metrics.clone()));
        let held = pool.permits.clone().acquire_owned().await.unwrap();
        let wanted = Wanted::default();
        let waiting = {
            let pool = pool.clone();
            tokio::spawn(async move {
                let stop = wanted.stop_flag();
                let answer = pool.preprocess(png(16), DecodeLimits::default(), spec(), stop);
                answer.await
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(metrics.decoding.get(), 1);
        // The client is gone while the image waits: it leaves the queue.
        waiting.abort();
        assert!(waiting.await.unwrap_err().is_cancelled());
        assert_eq!(metrics.decoding.get(), 0);
        assert_eq!(metrics.decodes_stopped.get(), 1);
        drop(held);
        let wanted = Wanted::default();
        let tensor = pool
            .preprocess(png(16), DecodeLimits::default(), spec(), wanted.stop_flag())
            .await
            .unwrap();
        assert_eq!(tensor.shape, [3, 8, 8]);
        assert_eq!(metrics.decoding.get(), 0);
        assert_eq!(metrics.decodes_stopped.get(), 1);
    }

    #[tokio::test]
    async fn an_image_nobody_wants_is_not_decoded() {
        let metrics = Arc::new(Metrics::default());
        let pool = DecodePool::new(2, metrics.clone());
        let stop = Wanted::default().stop_flag();
        let err = pool
            .preprocess(png(16), DecodeLimits::default(), spec(), stop)
            .await
            .unwrap_err();
        assert!(matches!(err, DecodeError::Stopped), "{err}");
        assert_eq!(metrics.decodes_stopped.get(), 1);
    }
}
