//! What one request may cost, and how many may run at once. Beyond the
//! concurrency cap a short queue waits; a full queue answers 429 at once,
//! a wait longer than the queue timeout answers 503, and a request that
//! runs past the request timeout answers 503. The server stays responsive
//! instead of piling up work it cannot finish.

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
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 16 << 20,
            max_pixels: 40_000_000,
            max_images: 32,
            max_concurrent: 64,
            max_queue: 64,
            queue_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// The concurrency cap and its queue.
#[derive(Debug)]
pub struct Admission {
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
    limits: Limits,
    metrics: Arc<Metrics>,
}

/// A slot of the cap, given back when dropped.
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    metrics: Arc<Metrics>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.metrics.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Admission {
    /// A cap of `limits.max_concurrent` with a queue of `limits.max_queue`.
    pub fn new(limits: Limits, metrics: Arc<Metrics>) -> Admission {
        Admission {
            slots: Arc::new(Semaphore::new(limits.max_concurrent)),
            waiting: AtomicUsize::new(0),
            limits,
            metrics,
        }
    }

    /// A slot now, a slot after a short wait, or the refusal.
    pub async fn enter(&self) -> Result<Slot, ApiError> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Ok(self.slot(permit));
        }
        let queued = self.waiting.fetch_add(1, Ordering::AcqRel);
        if queued >= self.limits.max_queue {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(ApiError::Busy);
        }
        self.metrics.queued.fetch_add(1, Ordering::Relaxed);
        let wait = tokio::time::timeout(
            self.limits.queue_timeout,
            self.slots.clone().acquire_owned(),
        )
        .await;
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        self.metrics.queued.fetch_sub(1, Ordering::Relaxed);
        match wait {
            Ok(Ok(permit)) => Ok(self.slot(permit)),
            // The semaphore is never closed; a timeout is the only way here.
            Ok(Err(_)) | Err(_) => Err(ApiError::Overloaded),
        }
    }

    fn slot(&self, permit: OwnedSemaphorePermit) -> Slot {
        self.metrics.in_flight.fetch_add(1, Ordering::Relaxed);
        Slot {
            _permit: permit,
            metrics: self.metrics.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(max_concurrent: usize, max_queue: usize) -> Admission {
        let limits = Limits {
            max_concurrent,
            max_queue,
            queue_timeout: Duration::from_millis(50),
            ..Limits::default()
        };
        Admission::new(limits, Arc::new(Metrics::default()))
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
        assert_eq!(admission.metrics.in_flight.load(Ordering::Relaxed), 1);
        drop(again);
        assert_eq!(admission.metrics.in_flight.load(Ordering::Relaxed), 0);
        assert_eq!(admission.metrics.queued.load(Ordering::Relaxed), 0);
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
