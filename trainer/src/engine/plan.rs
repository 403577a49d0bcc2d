//! Which images every step sees: a pure function of (seed, stage, step).
//!
//! Labeled images are reshuffled every epoch; unlabeled ones are consumed
//! `mu` times as fast, through their own sequence of shuffles. Because no
//! state is carried from step to step, a run resumed at step `s` sees
//! exactly the batches the interrupted run would have seen from `s` on.

use std::collections::HashMap;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::data::loader::{PartRequest, Request, View};

/// The images of one stage and how they are batched.
#[derive(Debug, Clone)]
pub struct StepPlan {
    /// `(image index in the store, class id)`.
    pub labeled: Vec<(usize, i64)>,
    /// Image indices in the store.
    pub unlabeled: Vec<usize>,
    pub batch_size: usize,
    /// Unlabeled images per labeled image; 0 for supervised steps.
    pub mu: usize,
    pub seed: u64,
    /// Distinguishes stages, so that each shuffles differently.
    pub stage: u64,
}

impl StepPlan {
    /// Full labeled batches per epoch (the last partial batch is dropped:
    /// a tiny batch makes BatchNorm statistics noisy).
    pub fn steps_per_epoch(&self) -> u64 {
        (self.labeled.len() / self.batch_size).max(1) as u64
    }

    /// Requests for steps `from..to`.
    pub fn requests(&self, from: u64, to: u64) -> Vec<Request> {
        let mut shuffles = Shuffles::default();
        (from..to)
            .map(|step| self.request(step, &mut shuffles))
            .collect()
    }

    fn request(&self, step: u64, shuffles: &mut Shuffles) -> Request {
        let per_epoch = self.steps_per_epoch();
        let (epoch, in_epoch) = (step / per_epoch, (step % per_epoch) as usize);
        let order = shuffles.get(self.mix(0, epoch), self.labeled.len());
        let take = self.batch_size.min(self.labeled.len());
        let labeled = (0..take)
            .map(|k| self.labeled[order[(in_epoch * take + k) % order.len()]])
            .collect();
        let mut parts = vec![PartRequest {
            items: labeled,
            view: View::Weak,
            first: 0,
        }];
        if self.mu > 0 && !self.unlabeled.is_empty() {
            let count = self.mu * self.batch_size;
            let n = self.unlabeled.len() as u64;
            let items = (0..count as u64)
                .map(|k| {
                    let position = step * count as u64 + k;
                    let order = shuffles.get(self.mix(1, position / n), n as usize);
                    (self.unlabeled[order[(position % n) as usize]], -1)
                })
                .collect();
            parts.push(PartRequest {
                items,
                view: View::WeakStrong,
                first: 0,
            });
        }
        Request {
            parts,
            seed: self.mix(2, step),
        }
    }

    /// A seed for one (kind, index) of this plan.
    fn mix(&self, kind: u64, index: u64) -> u64 {
        let mut x = self.seed
            ^ self.stage.rotate_left(17)
            ^ kind.rotate_left(41)
            ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        // splitmix64 finaliser: nearby inputs give unrelated seeds.
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^ (x >> 31)
    }
}

/// Permutations by seed, computed once each.
#[derive(Default)]
struct Shuffles(HashMap<u64, Vec<usize>>);

impl Shuffles {
    fn get(&mut self, seed: u64, n: usize) -> &[usize] {
        self.0.entry(seed).or_insert_with(|| {
            let mut order: Vec<usize> = (0..n).collect();
            order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
            order
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(mu: usize) -> StepPlan {
        StepPlan {
            labeled: (0..10).map(|i| (i, (i % 3) as i64)).collect(),
            unlabeled: (100..125).collect(),
            batch_size: 4,
            mu,
            seed: 7,
            stage: 1,
        }
    }

    #[test]
    fn every_labeled_image_once_per_epoch_minus_the_dropped_tail() {
        let p = plan(0);
        assert_eq!(p.steps_per_epoch(), 2);
        let requests = p.requests(0, 2);
        let mut seen: Vec<usize> = requests
            .iter()
            .flat_map(|r| r.parts[0].items.iter().map(|i| i.0))
            .collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 8);
        assert!(requests.iter().all(|r| r.parts.len() == 1));
    }

    #[test]
    fn resuming_midway_gives_the_same_requests() {
        let p = plan(2);
        let all = p.requests(0, 9);
        let resumed = p.requests(5, 9);
        for (a, b) in all[5..].iter().zip(&resumed) {
            assert_eq!(a.parts[0].items, b.parts[0].items);
            assert_eq!(a.parts[1].items, b.parts[1].items);
            assert_eq!(a.seed, b.seed);
        }
    }

    #[test]
    fn unlabeled_images_are_consumed_mu_times_faster_and_all_seen() {
        let p = plan(2);
        let requests = p.requests(0, 4);
        assert!(requests.iter().all(|r| r.parts[1].items.len() == 8));
        let mut seen: Vec<usize> = requests
            .iter()
            .flat_map(|r| r.parts[1].items.iter().map(|i| i.0))
            .collect();
        seen.sort();
        seen.dedup();
        // 32 draws cover the 25 unlabeled images (a full pass, then more).
        assert_eq!(seen.len(), 25);
    }

    #[test]
    fn stages_and_epochs_shuffle_differently() {
        let a = plan(0).requests(0, 1);
        let b = StepPlan {
            stage: 2,
            ..plan(0)
        }
        .requests(0, 1);
        let c = plan(0).requests(2, 3);
        assert_ne!(a[0].parts[0].items, b[0].parts[0].items);
        assert_ne!(a[0].parts[0].items, c[0].parts[0].items);
    }
}
