//! Learning-rate schedule: linear warmup, then cosine decay.
//!
//! A pure function of the optimizer step, so a resumed run needs only its
//! step count to continue on exactly the same curve.

use serde::{Deserialize, Serialize};

/// Linear warmup from `base_lr * warmup_start_ratio` at step 0 to `base_lr`
/// at `warmup_steps`, then a half cosine down to `base_lr * min_lr_ratio`
/// at `total_steps`, and that floor after it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LrSchedule {
    pub base_lr: f64,
    pub warmup_steps: u64,
    pub total_steps: u64,
    /// Final rate as a share of `base_lr` (0 decays to zero).
    pub min_lr_ratio: f64,
    /// Rate of step 0 as a share of `base_lr`.
    pub warmup_start_ratio: f64,
}

impl LrSchedule {
    /// A schedule that warms up from zero and decays to zero.
    pub fn new(base_lr: f64, warmup_steps: u64, total_steps: u64) -> Self {
        LrSchedule {
            base_lr,
            warmup_steps,
            total_steps,
            min_lr_ratio: 0.0,
            warmup_start_ratio: 0.0,
        }
    }

    /// The rate for optimizer step `step` (0 for the first update).
    pub fn lr_at(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            let progress = step as f64 / self.warmup_steps as f64;
            let start = self.warmup_start_ratio;
            return self.base_lr * (start + (1.0 - start) * progress);
        }
        let min_lr = self.base_lr * self.min_lr_ratio;
        // Warmup as long as the whole run leaves no room for decay: the
        // floor is where the curve ends either way.
        let decay_steps = self.total_steps.saturating_sub(self.warmup_steps);
        if decay_steps == 0 {
            return min_lr;
        }
        let progress = ((step - self.warmup_steps) as f64 / decay_steps as f64).min(1.0);
        let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
        min_lr + (self.base_lr - min_lr) * cosine
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(got: f64, want: f64) {
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
    }

    #[test]
    fn warmup_then_cosine_to_the_floor() {
        let s = LrSchedule {
            min_lr_ratio: 0.1,
            warmup_start_ratio: 0.2,
            ..LrSchedule::new(1.0, 10, 110)
        };
        close(s.lr_at(0), 0.2);
        close(s.lr_at(5), 0.6);
        close(s.lr_at(10), 1.0);
        // Halfway through the decay: the middle of base and floor.
        close(s.lr_at(60), 0.55);
        // A quarter: 0.1 + 0.9 * (1 + cos(pi/4)) / 2.
        close(s.lr_at(35), 0.1 + 0.45 * (1.0 + 0.5f64.sqrt()));
        close(s.lr_at(110), 0.1);
        close(s.lr_at(1000), 0.1);
    }

    #[test]
    fn defaults_start_and_end_at_zero() {
        let s = LrSchedule::new(0.5, 4, 8);
        close(s.lr_at(0), 0.0);
        close(s.lr_at(1), 0.125);
        close(s.lr_at(4), 0.5);
        close(s.lr_at(8), 0.0);
    }

    #[test]
    fn without_warmup_or_decay_room() {
        close(LrSchedule::new(0.5, 0, 4).lr_at(0), 0.5);
        close(LrSchedule::new(0.5, 0, 4).lr_at(2), 0.25);
        let s = LrSchedule::new(0.5, 4, 4);
        close(s.lr_at(3), 0.375);
        close(s.lr_at(4), 0.0);
        close(LrSchedule::new(0.5, 0, 0).lr_at(0), 0.0);
    }
}
