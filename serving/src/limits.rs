//! What one request may cost, and how many may run at once. Beyond the
//! concurrency cap a short queue waits; a full queue answers 429 at once,
//! a wait longer than the queue timeout answers 503, and a request that
//! runs past the request timeout answers 503. The server stays responsive
//! instead of piling up work it cannot finish. README's "Serving" section
//! says what each limit stops and what it does not.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;
use crate::metrics::Metrics;

/// The limits of the prediction API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest request body (413 beyond).
    pub max_body_bytes: usize,
    /// Largest `width * height` an image header may declare (413 beyond),
    /// checked before any pixel is decoded.
    pub max_pixels: u64,
    /// Largest sum of the pixels the headers of one request's images
    /// declare (413 beyond), checked before any of them is decoded.
    pub max_request_pixels: u64,
    /// Longest a request body may take to arrive (408 after); activation
    /// requests must arrive within it before they queue for a slot.
    pub body_timeout: Duration,
    /// Most images in one request.
    pub max_images: usize,
    /// Requests running at once.
    pub max_concurrent: usize,
    /// Requests waiting for a slot; more are refused with 429.
    pub max_queue: usize,
    /// Longest wait for a slot (503 after).
    pub queue_timeout: Duration,
    /// Longest a request may take once admitted (503 after).
    pub request_timeout: Duration,
    /// Connections open at once; more wait in the listen backlog. Kept
    /// below the open-file limit (see `serve::connection_cap`), so a flood
    /// of connections cannot make the server fail to open files.
    pub max_connections: usize,
    /// Longest a client may take to send a request's head, and longest an
    /// idle keep-alive connection stays open.
    pub header_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 16 << 20,
            // A 24 MP camera's 6000x4000 photo, the largest picture people
            // commonly send; the models read at most a few hundred pixels a
            // side, so nothing is lost by refusing larger ones, and one
            // 16-bit RGBA decode of this size peaks near 270 MB (8 bytes a
            // pixel decoded, 3 as RGB) instead of 430 MB at 40 MP.
            max_pixels: 24_000_000,
            // Two such photos in one request; 32 web-sized (1.5 MP) images.
            max_request_pixels: 48_000_000,
            body_timeout: Duration::from_secs(10),
            max_images: 32,
            max_concurrent: 64,
            max_queue: 64,
            queue_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(30),
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
        }
    }
}

/// How many may run at once, and how many may wait how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cap {
    pub max_concurrent: usize,
    pub max_queue: usize,
    pub queue_timeout: Duration,
}

impl Limits {
    /// The prediction API's concurrency cap.
    pub fn prediction_cap(&self) -> Cap {
        Cap {
            max_concurrent: self.max_concurrent,
            max_queue: self.max_queue,
            queue_timeout: self.queue_timeout,
        }
    }
}

/// A concurrency cap and its queue.
#[derive(Debug)]
pub struct Admission {
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
    cap: Cap,
    /// Where the slots in use and the waiting requests are counted, if
    /// anywhere.
    metrics: Option<Arc<Metrics>>,
}

/// A slot of the cap, given back when dropped.
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    metrics: Option<Arc<Metrics>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(metrics) = &self.metrics {
            metrics.in_flight.dec();
        }
    }
}

impl Admission {
    /// `cap.max_concurrent` slots with a queue of `cap.max_queue`.
    pub fn new(cap: Cap, metrics: Option<Arc<Metrics>>) -> Admission {
        Admission {
            slots: Arc::new(Semaphore::new(cap.max_concurrent)),
            waiting: AtomicUsize::new(0),
            cap,
            metrics,
        }
    }

    /// A slot now, a slot after a short wait, or the refusal.
    pub async fn enter(&self) -> Result<Slot, ApiError> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Ok(self.slot(permit));
        }
        let queued = self.waiting.fetch_add(1, Ordering::AcqRel);
        if queued >= self.cap.max_queue {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(ApiError::Busy);
        }
        self.count_queued(1);
        let wait =
            tokio::time::timeout(self.cap.queue_timeout, self.slots.clone().acquire_owned()).await;
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        self.count_queued(-1);
        match wait {
            Ok(Ok(permit)) => Ok(self.slot(permit)),
            // The semaphore is never closed; a timeout is the only way here.
            Ok(Err(_)) | Err(_) => Err(ApiError::Overloaded),
        }
    }

    fn count_queued(&self, change: i64) {
        if let Some(metrics) = &self.metrics {
            metrics.queued.inc_by(change);
        }
    }

    fn slot(&self, permit: OwnedSemaphorePermit) -> Slot {
        if let Some(metrics) = &self.metrics {
            metrics.in_flight.inc();
        }
        Slot {
            _permit: permit,
            metrics: self.metrics.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::gauge::Gauge;

    use super::*;

    fn admission(max_concurrent: usize, max_queue: usize) -> Admission {
        let cap = Cap {
            max_concurrent,
            max_queue,
            queue_timeout: Duration::from_millis(50),
        };
        Admission::new(cap, Some(Arc::new(Metrics::default())))
    }

    fn gauge(admission: &Admission, which: fn(&Metrics) -> &Gauge) -> i64 {
        which(admission.metrics.as_ref().unwrap()).get()
    }

    #[tokio::test]
    async fn beyond_the_cap_a_short_queue_then_429_and_503() {
        let admission = Arc::new(admission(1, 1));
        let held = admission.enter().await.unwrap();
        let waiter = {
            let admission = admission.clone();
            tokio::spawn(async move { admission.enter().await.map(drop) })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        let refused = admission.enter().await.unwrap_err();
        assert_eq!(refused.status_and_code().0.as_u16(), 429);
        let timed_out = waiter.await.unwrap().unwrap_err();
        assert_eq!(timed_out.status_and_code().0.as_u16(), 503);
        drop(held);
        let again = admission.enter().await.unwrap();
        assert_eq!(gauge(&admission, |m| &m.in_flight), 1);
        drop(again);
        assert_eq!(gauge(&admission, |m| &m.in_flight), 0);
        assert_eq!(gauge(&admission, |m| &m.queued), 0);
    }

    #[tokio::test]
    async fn a_queued_request_gets_the_freed_slot() {
        let admission = Arc::new(admission(1, 4));
        let held = admission.enter().await.unwrap();
        let waiter = {
            let admission = admission.clone();
            tokio::spawn(async move { admission.enter().await.map(drop) })
        };
        tokio::time::sleep(Duration::from_millis(5)).await;
        drop(held);
        waiter.await.unwrap().unwrap();
    }
}
