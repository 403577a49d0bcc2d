//! FreeMatch (Wang et al. 2023), as USB's `freematch.py`: FixMatch with a
//! self-adaptive threshold and a fairness loss. A global threshold follows
//! the mean confidence on weak views and is scaled per class by the class's
//! mean predicted probability, so rare or hard classes get a lower bar (what
//! an imbalanced dataset needs); the fairness loss keeps the strong-view
//! predictions from collapsing onto a few classes.
//!
//! One deliberate difference: USB starts the state at 1/C (its models start
//! from random weights, as unsure as that); our semi-supervised stage starts
//! from the supervised stage's best model, already confident, so the state
//! starts from the first batch's statistics instead of taking thousands of
//! steps (at momentum 0.999) to climb from 1/C while nearly every noisy
//! pseudo-label passes.

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use super::{Algorithm, StateError, StepLogits, StepLosses, masked_consistency, teacher_probs};

/// The adaptive state, saved with checkpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FreeMatchState {
    /// Global threshold: EMA of the mean max probability.
    pub time_p: f64,
    /// Per class: EMA of the mean predicted probability.
    pub p_model: Vec<f64>,
    /// Per class: EMA of the share of pseudo-labels.
    pub label_hist: Vec<f64>,
    /// Whether the state has seen a batch (before, the first batch sets it).
    #[serde(default = "seen_by_default")]
    pub started: bool,
}

/// States saved before `started` existed had seen batches.
fn seen_by_default() -> bool {
    true
}

#[derive(Debug, Clone)]
pub struct FreeMatch {
    pub lambda_u: f64,
    /// Weight of the fairness loss (USB's `ent_loss_ratio`, 0.01).
    pub lambda_e: f64,
    /// EMA momentum of the adaptive state (0.999 in the paper).
    pub ema_p: f64,
    pub state: FreeMatchState,
}

impl FreeMatch {
    pub fn new(num_classes: usize, lambda_u: f64, lambda_e: f64, ema_p: f64) -> Self {
        let uniform = 1.0 / num_classes as f64;
        FreeMatch {
            lambda_u,
            lambda_e,
            ema_p,
            state: FreeMatchState {
                time_p: uniform,
                p_model: vec![uniform; num_classes],
                label_hist: vec![uniform; num_classes],
                started: false,
            },
        }
    }

    /// Folds one batch of weak-view probabilities into the state (the first
    /// batch replaces it).
    fn update(&mut self, probs: &Tensor, max_probs: &Tensor, max_idx: &Tensor) {
        let m = if self.state.started { self.ema_p } else { 0.0 };
        let s = &mut self.state;
        s.started = true;
        s.time_p = s.time_p * m + (1.0 - m) * max_probs.mean(Kind::Float).double_value(&[]);
        let mean_probs = Vec::<f64>::try_from(probs.mean_dim(0, false, Kind::Double)).expect("1-D");
        let counts = class_counts(max_idx, s.p_model.len());
        let total: f64 = counts.iter().sum::<f64>().max(1.0);
        for c in 0..s.p_model.len() {
            s.p_model[c] = s.p_model[c] * m + (1.0 - m) * mean_probs[c];
            s.label_hist[c] = s.label_hist[c] * m + (1.0 - m) * counts[c] / total;
        }
    }

    /// Per-class thresholds: `time_p * p_model / max(p_model)`.
    pub fn thresholds(&self) -> Vec<f64> {
        let max = self.state.p_model.iter().copied().fold(f64::MIN, f64::max);
        self.state
            .p_model
            .iter()
            .map(|p| self.state.time_p * p / max)
            .collect()
    }

    /// USB's `entropy_loss`: Σ p̂_model · log p̂_strong over the masked
    /// strong views, both distributions divided by their class histograms
    /// and renormalised.
    fn fairness_loss(&self, logits_s: &Tensor, mask: &Tensor) -> Tensor {
        let device = logits_s.device();
        let kept = logits_s.index_select(0, &mask.nonzero().squeeze_dim(1));
        let prob_s = kept.softmax(-1, Kind::Float);
        let classes = self.state.p_model.len();
        let hist_s = Tensor::from_slice(&class_counts(&prob_s.argmax(-1, false), classes))
            .to_kind(Kind::Float)
            .to_device(device);
        let hist_s = &hist_s / hist_s.sum(Kind::Float);
        let constant = |v: &[f64]| Tensor::from_slice(v).to_kind(Kind::Float).to_device(device);
        let mod_prob_model = normalised(
            &(constant(&self.state.p_model) * inverse(&constant(&self.state.label_hist))),
        );
        let mod_mean_prob_s =
            normalised(&(prob_s.mean_dim(0, false, Kind::Float) * inverse(&hist_s)));
        (mod_prob_model * (mod_mean_prob_s + 1e-12).log()).sum(Kind::Float)
    }
}

/// How often each class is the argmax.
fn class_counts(max_idx: &Tensor, classes: usize) -> Vec<f64> {
    Vec::<f64>::try_from(
        max_idx
            .bincount::<Tensor>(None, classes as i64)
            .to_kind(Kind::Double),
    )
    .expect("1-D")
}

/// `1 / x`, 0 where `x` is 0 (USB's `replace_inf_to_zero`), constant.
fn inverse(x: &Tensor) -> Tensor {
    let x = x.detach();
    let zero = x.eq(0.0);
    (x.reciprocal()).masked_fill(&zero, 0.0)
}

fn normalised(x: &Tensor) -> Tensor {
    x / x.sum(Kind::Float)
}

impl Algorithm for FreeMatch {
    fn name(&self) -> &'static str {
        "freematch"
    }

    fn uses_unlabeled(&self) -> bool {
        true
    }

    fn losses(&mut self, logits: &StepLogits) -> StepLosses {
        let probs_x_ulb_w = teacher_probs(logits);
        let (max_probs, pseudo_label) = probs_x_ulb_w.max_dim(-1, false);
        self.update(&probs_x_ulb_w, &max_probs, &pseudo_label);
        let thresholds = Tensor::from_slice(&self.thresholds())
            .to_kind(Kind::Float)
            .to_device(max_probs.device());
        let mask = max_probs
            .ge_tensor(&thresholds.index_select(0, &pseudo_label))
            .to_kind(Kind::Float);
        let mut losses = masked_consistency(logits, &pseudo_label, &mask, self.lambda_u);
        if self.lambda_e > 0.0 && mask.sum(Kind::Float).double_value(&[]) > 0.0 {
            let logits_s = logits
                .logits_x_ulb_s
                .expect("unlabeled step without strong logits");
            losses.total += self.fairness_loss(logits_s, &mask) * self.lambda_e;
        }
        losses
    }

    fn state(&self) -> serde_json::Value {
        serde_json::to_value(&self.state).expect("state serialises")
    }

    fn load_state(&mut self, state: &serde_json::Value) -> Result<(), StateError> {
        let error = |message: String| StateError {
            algorithm: "freematch",
            message,
        };
        let loaded: FreeMatchState =
            serde_json::from_value(state.clone()).map_err(|e| error(e.to_string()))?;
        if loaded.p_model.len() != self.state.p_model.len() {
            return Err(error(format!(
                "{} classes saved, {} now",
                loaded.p_model.len(),
                self.state.p_model.len()
            )));
        }
        self.state = loaded;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(fm: &mut FreeMatch, weak: &[f32]) -> StepLosses {
        let n = weak.len() as i64 / 2;
        let logits_x_lb = Tensor::from_slice(&[1.0f32, 0.0]).reshape([1, 2]);
        let y_lb = Tensor::from_slice(&[0i64]);
        let weak = Tensor::from_slice(weak).reshape([n, 2]);
        let strong = weak.copy();
        fm.losses(&StepLogits {
            logits_x_lb: &logits_x_lb,
            y_lb: &y_lb,
            logits_x_ulb_w: Some(&weak),
            logits_x_ulb_s: Some(&strong),
            soft_targets: None,
        })
    }

    #[test]
    fn the_first_batch_sets_the_state_then_it_follows_confidence() {
        let mut fm = FreeMatch::new(2, 1.0, 0.0, 0.9);
        // Starting from a trained model: the first batch's confidence
        // (softmax of [2, 0]: 0.881), not 1/C.
        step(&mut fm, &[2.0, 0.0]);
        assert!(
            (fm.state.time_p - 0.8808).abs() < 1e-3,
            "{}",
            fm.state.time_p
        );
        for _ in 0..100 {
            step(&mut fm, &[8.0, 0.0, 0.0, 8.0]);
        }
        assert!(fm.state.time_p > 0.99, "{}", fm.state.time_p);
        assert_eq!(step(&mut fm, &[0.4, 0.0]).mask_ratio, 0.0);
    }

    #[test]
    fn the_fairness_loss_is_usbs() {
        // USB's entropy_loss on the same tensors gives -0.7653422 (torch 2.13).
        let mut fm = FreeMatch::new(3, 1.0, 0.01, 0.9);
        fm.state.p_model = vec![0.5, 0.3, 0.2];
        fm.state.label_hist = vec![0.6, 0.4, 0.0];
        let logits_s = Tensor::from_slice(&[2.0f32, 0., 1., 0., 3., 0., 1., 0., 0.5, 0., 0., 4.])
            .reshape([4, 3]);
        let mask = Tensor::from_slice(&[1.0f32, 1., 1., 0.]);
        let loss = fm.fairness_loss(&logits_s, &mask).double_value(&[]);
        assert!((loss + 0.7653422).abs() < 1e-5, "{loss}");
    }

    #[test]
    fn a_rarely_predicted_class_gets_a_lower_threshold() {
        let mut fm = FreeMatch::new(2, 1.0, 0.0, 0.9);
        for _ in 0..50 {
            step(&mut fm, &[3.0, 0.0, 3.0, 0.0, 3.0, 0.0, 0.0, 1.0]);
        }
        let [t0, t1] = fm.thresholds()[..] else {
            panic!()
        };
        assert!(t1 < t0, "rare class 1: {t1} vs {t0}");
    }

    #[test]
    fn state_round_trips_and_refuses_another_class_count() {
        let mut fm = FreeMatch::new(2, 1.0, 0.0, 0.9);
        step(&mut fm, &[2.0, 0.0]);
        let mut other = FreeMatch::new(2, 1.0, 0.0, 0.9);
        other.load_state(&fm.state()).unwrap();
        assert_eq!(other.state, fm.state);
        let err = FreeMatch::new(3, 1.0, 0.0, 0.9)
            .load_state(&fm.state())
            .unwrap_err();
        assert!(err.to_string().contains("2 classes saved, 3 now"), "{err}");
    }
}
