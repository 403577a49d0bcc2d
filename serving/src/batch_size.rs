//! How many images a batch should take, learnt from the batches run. On a
//! GPU a batch of 16 costs little more than one image; on a CPU a small
//! model costs *more* per image in a big batch (lcnet_100 on ONNX Runtime,
//! one thread: 468 images/s at batch 1, 394 at 16), and waiting for
//! company only adds latency. So each model keeps the cost per image of
//! the batch sizes it ran (by powers of two) and lets batches grow only
//! while bigger ones were cheaper per image; the batcher waits for
//! announced images only when the next batch may hold more than it has.

use std::time::Duration;

/// How far a dearer batch moves its size's running cost towards its own:
/// a cost rises slowly (one slow run on a busy machine is not the size's
/// fault) and falls at once (noise only ever adds time, so a cheaper run
/// shows what the size really costs, and a cold first run is forgotten).
const RISE: f64 = 0.2;

/// Every this many batches the sizes next to the cheapest are tried again
/// (the smaller one, then, half a period later, the larger one), so that a
/// cost measured under other conditions (the machine was busy, the first
/// run was cold) gets a retrial.
const RETRY_EVERY: u64 = 16;

/// How much cheaper per image a bigger batch must be to be preferred. A
/// batch of n keeps its first image waiting for n - 1 others' inference,
/// so a bigger batch must pay for that latency; and the running costs are
/// noisy (two sessions and the decoders share the cores), so sizes whose
/// costs differ by less than the noise must not flip the choice. resnet50
/// on one thread per session ran at 1.9 images a batch with ONNX Runtime 6%
/// dearer per image than at batch 1; an accelerator's batch of 16 is
/// several times cheaper per image and passes at once.
const BIGGER_MUST_SAVE: f64 = 0.10;

/// What the next batch may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimit {
    /// Most images it takes from what is queued.
    pub most: usize,
    /// Up to how many it waits for (announced images): the cheapest size
    /// known, never a size being tried out, so trials add no latency.
    pub wait_for: usize,
}

/// The running cost per image of each batch size class (1, 2-3, 4-7, ...).
#[derive(Debug, Clone)]
pub struct BatchSizer {
    max_batch: usize,
    /// Seconds per image, by `log2(batch size)`.
    per_image: Vec<Option<f64>>,
    batches: u64,
}

impl BatchSizer {
    /// Batches of at most `max_batch` images.
    pub fn new(max_batch: usize) -> BatchSizer {
        let max_batch = max_batch.max(1);
        BatchSizer {
            max_batch,
            per_image: vec![None; class_of(max_batch) + 1],
            batches: 0,
        }
    }

    /// The next batch: single images until one was measured; then the
    /// cheapest size per image measured, or the next size up while it is
    /// untried, or a size next to the cheapest when a retrial is due.
    pub fn limit(&self) -> BatchLimit {
        let Some(best) = self.cheapest() else {
            return BatchLimit {
                most: 1,
                wait_for: 1,
            };
        };
        let exists = |class: usize| class < self.per_image.len();
        let up = best + 1;
        let class = match self.batches % RETRY_EVERY {
            _ if exists(up) && self.per_image[up].is_none() => up,
            n if n == RETRY_EVERY - 1 && exists(up) => up,
            n if n == RETRY_EVERY / 2 - 1 && best > 0 => best - 1,
            _ => best,
        };
        let size = |class: usize| (1usize << class).min(self.max_batch);
        BatchLimit {
            most: size(class),
            wait_for: size(best),
        }
    }

    /// One batch of `images` that ran for `took`.
    pub fn record(&mut self, images: usize, took: Duration) {
        if images == 0 {
            return;
        }
        self.batches += 1;
        let class = class_of(images).min(self.per_image.len() - 1);
        let cost = took.as_secs_f64() / images as f64;
        let old = self.per_image[class].unwrap_or(cost);
        let new = if cost < old {
            cost
        } else {
            old + RISE * (cost - old)
        };
        self.per_image[class] = Some(new);
    }

    /// The size class to run, once any was measured: the smallest, unless
    /// a bigger one costs at least [`BIGGER_MUST_SAVE`] less per image than
    /// the one chosen so far.
    fn cheapest(&self) -> Option<usize> {
        let measured = self.per_image.iter().enumerate();
        let mut costs = measured.filter_map(|(class, cost)| Some((class, (*cost)?)));
        let first = costs.next()?;
        let (chosen, _) = costs.fold(first, |chosen, bigger| {
            if bigger.1 <= chosen.1 * (1.0 - BIGGER_MUST_SAVE) {
                bigger
            } else {
                chosen
            }
        });
        Some(chosen)
    }
}

/// `floor(log2(n))` for n >= 1: the size class of a batch of n.
fn class_of(n: usize) -> usize {
    (usize::BITS - 1 - n.max(1).leading_zeros()) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `rounds` batches as large as the sizer allows, each costing
    /// `cost(n)` for n images, and returns the sizes.
    fn drive(sizer: &mut BatchSizer, rounds: usize, cost: impl Fn(usize) -> f64) -> Vec<usize> {
        (0..rounds)
            .map(|_| {
                let n = sizer.limit().most;
                sizer.record(n, Duration::from_secs_f64(cost(n)));
                n
            })
            .collect()
    }

    #[test]
    fn size_classes_are_powers_of_two() {
        let classes: Vec<usize> = [1, 2, 3, 4, 7, 8, 16].map(class_of).to_vec();
        assert_eq!(classes, [0, 1, 1, 2, 2, 3, 4]);
    }

    #[test]
    fn batches_grow_while_bigger_ones_are_cheaper_per_image() {
        // An accelerator: a batch costs 10 ms however many images it holds.
        let mut sizer = BatchSizer::new(16);
        let sizes = drive(&mut sizer, 100, |_| 0.010);
        assert_eq!(&sizes[..6], &[1, 2, 4, 8, 16, 16], "{sizes:?}");
        // Full batches but for a retrial of 8 now and then.
        let full = sizes[4..].iter().filter(|&&n| n == 16).count();
        assert!(full >= 90, "{sizes:?}");
        assert_eq!(sizer.limit().wait_for, 16);
    }

    #[test]
    fn batches_stay_single_where_bigger_ones_cost_more_per_image() {
        // A small model on a CPU: 2 ms an image, 2% more per image in each
        // doubling of the batch.
        let mut sizer = BatchSizer::new(16);
        let cost = |n: usize| 0.002 * n as f64 * (1.0 + 0.02 * (n as f64).log2());
        let sizes = drive(&mut sizer, 200, cost);
        let singles = sizes.iter().filter(|&&n| n == 1).count();
        // Single images but for a retrial of pairs now and then.
        assert!(singles >= 180, "{singles} single batches: {sizes:?}");
        assert!(sizes.iter().all(|&n| n <= 2), "{sizes:?}");
        // Never waiting for a second image.
        assert_eq!(sizer.limit().wait_for, 1);
    }

    #[test]
    fn a_slow_first_batch_is_retried_and_outweighed() {
        let mut sizer = BatchSizer::new(8);
        // A cold start: the first single image took 20 ms, not 2.
        sizer.record(1, Duration::from_millis(20));
        let sizes = drive(&mut sizer, 100, |n| 0.002 * n as f64 * n as f64);
        let tail = &sizes[50..];
        let singles = tail.iter().filter(|&&n| n == 1).count();
        assert!(singles >= 40, "{sizes:?}");
        assert_eq!(sizer.limit().wait_for, 1);
    }

    #[test]
    fn the_limit_follows_a_change_of_costs() {
        let mut sizer = BatchSizer::new(8);
        drive(&mut sizer, 50, |n| {
            0.002 * n as f64 * (1.0 + 0.1 * n as f64)
        });
        assert_eq!(sizer.limit().wait_for, 1);
        // The same model now on an accelerator: the retrials find out.
        drive(&mut sizer, 200, |_| 0.002);
        assert_eq!(sizer.limit().wait_for, 8);
    }

    #[test]
    fn a_bigger_batch_barely_cheaper_per_image_does_not_displace_single_images() {
        // An inference-bound model on a busy CPU: pairs measure 3% cheaper
        // per image (noise), which is not worth the wait of a pair.
        let mut sizer = BatchSizer::new(16);
        let sizes = drive(&mut sizer, 200, |n| {
            0.080 * n as f64 * if n == 1 { 1.0 } else { 0.97 }
        });
        let singles = sizes[20..].iter().filter(|&&n| n == 1).count();
        assert!(singles >= 160, "{sizes:?}");
        assert_eq!(sizer.limit().wait_for, 1);
        // Pairs 20% cheaper per image are worth it.
        let mut sizer = BatchSizer::new(2);
        drive(&mut sizer, 50, |n| {
            0.080 * n as f64 * if n == 1 { 1.0 } else { 0.8 }
        });
        assert_eq!(sizer.limit().wait_for, 2);
    }

    #[test]
    fn one_image_at_most_when_max_batch_is_one() {
        let mut sizer = BatchSizer::new(1);
        assert_eq!(drive(&mut sizer, 5, |_| 0.01), vec![1; 5]);
    }
}
